using System.Text.Json;

namespace Serving.Peers;

/// <summary>
/// What the peer harnesses (benchmarks/llama-peer, benchmarks/genai-peer) share: option parsing and the
/// figures each prints as one JSON object, under the names run.sh reads.
/// </summary>
internal static class PeerFigures
{
    /// <summary>
    /// The first round (cold: the first request after load) and the median of the later rounds (warm, as a
    /// serving process runs; llama-bench's warm-up then repetitions), or of the one round there is.
    /// </summary>
    public static Dictionary<string, object> RoundFigures(double loadMs, long rssAfterLoad, int promptTokens, IReadOnlyList<int> generated,
        List<double> prefillMs, List<double> decodeTokensPerSecond)
    {
        List<double> warmPrefill = prefillMs.Count > 1 ? prefillMs[1..] : prefillMs;
        List<double> warmDecode = decodeTokensPerSecond.Count > 1 ? decodeTokensPerSecond[1..] : decodeTokensPerSecond;
        return new Dictionary<string, object>
        {
            ["rounds"] = prefillMs.Count,
            ["load_ms"] = Math.Round(loadMs, 1),
            ["rss_bytes_after_load"] = rssAfterLoad,
            ["rss_bytes_peak"] = PeakRss(),
            ["prompt_tokens"] = promptTokens,
            ["decode_tokens"] = generated.Count,
            ["token_ids"] = generated,
            ["prefill_ms_first"] = Math.Round(prefillMs[0], 2),
            ["prefill_ms"] = Math.Round(Median(warmPrefill), 2),
            ["prefill_tokens_per_second"] = Math.Round(promptTokens / Median(warmPrefill) * 1000, 2),
            ["decode_tokens_per_second_first"] = Math.Round(decodeTokensPerSecond[0], 2),
            ["decode_tokens_per_second"] = Math.Round(Median(warmDecode), 2),
            ["prefill_ms_rounds"] = prefillMs.Select(v => Math.Round(v, 2)).ToArray(),
            ["decode_tokens_per_second_rounds"] = decodeTokensPerSecond.Select(v => Math.Round(v, 2)).ToArray(),
        };
    }

    /// <summary>The process's peak resident set (VmHWM), bytes; −1 where /proc has none.</summary>
    public static long PeakRss()
    {
        foreach (string line in File.ReadLines("/proc/self/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                return long.Parse(line[6..].Trim().Split(' ')[0]) * 1024;
            }
        }

        return -1;
    }

    public static double Median(List<double> values)
    {
        var sorted = values.Order().ToArray();
        return sorted.Length % 2 == 1 ? sorted[sorted.Length / 2] : (sorted[sorted.Length / 2 - 1] + sorted[sorted.Length / 2]) / 2;
    }

    public static void WriteJson(Dictionary<string, object> values, Dictionary<string, object>? more = null)
    {
        foreach ((string key, object value) in more ?? [])
        {
            values[key] = value;
        }

        Console.WriteLine(JsonSerializer.Serialize(values));
    }
}

internal sealed class UsageException(string message) : Exception(message);

/// <summary>"--name value" pairs.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var options = new Options();
        for (int i = 0; i < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new UsageException($"expected '--name value' pairs, got '{args[i]}'");
            }

            options._values[args[i][2..]] = args[i + 1];
        }

        return options;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int Int(string name, int fallback) => Get(name) is { } text
        ? int.TryParse(text, out int value) ? value : throw new UsageException($"--{name} must be an integer, got '{text}'")
        : fallback;
}
