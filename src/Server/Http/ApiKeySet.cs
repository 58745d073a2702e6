using System.Security.Cryptography;
using System.Text;
using Serving.Server.Hosting;

namespace Serving.Server.Http;

/// <summary>
/// The API keys of the server, from <c>Serving:ApiKeys</c> and the lines of <c>Serving:ApiKeysFile</c>, read
/// once at start. Held as SHA-256 digests, so every comparison is of 32 bytes: neither a key's bytes nor its
/// length shows in how long a refusal takes (FixedTimeEquals alone returns at once on a length mismatch).
/// </summary>
public sealed class ApiKeySet
{
    private readonly byte[][] _digests;

    private ApiKeySet(byte[][] digests) => _digests = digests;

    /// <summary>False when no key is configured: every route is open.</summary>
    public bool IsEnabled => _digests.Length > 0;

    public int NumKeys => _digests.Length;

    /// <summary>The keys of the (validated) options, and one log line saying whether keys are required.</summary>
    public static ApiKeySet Create(ServingOptions options, ILogger logger)
    {
        var keys = new HashSet<string>(options.ApiKeys.Select(key => key.Trim()), StringComparer.Ordinal);
        if (options.ApiKeysFile is { } file)
        {
            keys.UnionWith(ReadFile(file, out _));
        }

        var set = new ApiKeySet([.. keys.Where(key => key.Length > 0).Select(key => SHA256.HashData(Encoding.UTF8.GetBytes(key)))]);
        if (set.IsEnabled)
        {
            int perMinute = options.RateLimit.RequestsPerMinute;
            logger.LogInformation("API keys: on, {NumKeys} configured, {RateLimit}; /health is open, /metrics and /dashboard are {Metrics}",
                set.NumKeys, perMinute > 0 ? $"{perMinute} requests a minute each" : "no rate limit",
                options.ProtectMetrics ? "protected (Serving:ProtectMetrics)" : "open");
        }
        else
        {
            logger.LogInformation("API keys: off, every route is open (set Serving:ApiKeys or Serving:ApiKeysFile to require one)");
        }

        return set;
    }

    /// <summary>The keys in a file, one a line, trimmed; blank lines and lines starting with '#' skipped. None, and why, when it cannot be read.</summary>
    public static IReadOnlyList<string> ReadFile(string path, out string? problem)
    {
        try
        {
            problem = null;
            return [.. File.ReadLines(path).Select(line => line.Trim()).Where(line => line.Length > 0 && !line.StartsWith('#'))];
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            problem = "cannot be read: " + e.Message.TrimEnd('.');
            return [];
        }
    }

    /// <summary>
    /// Which of the keys <paramref name="key"/> is (an index only the rate limiter uses), or -1; it is
    /// compared with every key, without an early exit.
    /// </summary>
    public int IndexOf(string key)
    {
        Span<byte> digest = stackalloc byte[SHA256.HashSizeInBytes];
        SHA256.HashData(Encoding.UTF8.GetBytes(key), digest);
        int index = -1;
        for (int i = 0; i < _digests.Length; i++)
        {
            index = CryptographicOperations.FixedTimeEquals(_digests[i], digest) ? i : index;
        }

        return index;
    }
}

/// <summary>Set on a request that sent a valid key: which one, so each key gets its own rate limit.</summary>
public sealed record ApiKeyFeature(int KeyIndex);
