using Microsoft.Extensions.Options;
using Serving.Runtime.Devices;
using Serving.Runtime.Models;
using Serving.Server.Http;

namespace Serving.Server.Hosting;

/// <summary>Checks what data annotations cannot: model entries, unique ids, folders that exist.</summary>
public sealed class ServingOptionsValidator : IValidateOptions<ServingOptions>
{
    public const int MaxShutdownDrainSeconds = 3600;

    public ValidateOptionsResult Validate(string? name, ServingOptions options)
    {
        var failures = new List<string>();
        if (string.IsNullOrWhiteSpace(options.DataDirectory))
        {
            failures.Add("Serving:DataDirectory must name a folder.");
        }

        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < options.Models.Count; i++)
        {
            ModelOptions model = options.Models[i];
            if (string.IsNullOrWhiteSpace(model.Id))
            {
                failures.Add($"Serving:Models:{i}:Id is empty.");
            }
            else if (!ids.Add(model.Id))
            {
                failures.Add($"Serving:Models:{i}:Id '{model.Id}' is used twice.");
            }

            if (string.IsNullOrWhiteSpace(model.Path))
            {
                failures.Add($"Serving:Models:{i}:Path is empty.");
            }
            else if (!Directory.Exists(model.Path))
            {
                failures.Add($"Serving:Models:{i}:Path '{model.Path}' is not a folder.");
            }

            if (model.Dtype is { } dtype && !OnnxVariant.IsKnown(dtype))
            {
                failures.Add($"Serving:Models:{i}:Dtype '{dtype}' is not one of {string.Join(", ", OnnxVariant.Dtypes)}.");
            }
        }

        if (options.KvCompression.Validate(slidingSlots: 0) is { } compression)
        {
            string key = string.Concat(compression.Field.Split('_').Select(word => char.ToUpperInvariant(word[0]) + word[1..]));
            failures.Add($"Serving:KvCompression:{key}: {compression.Message}");
        }

        try
        {
            DeviceRequest.Parse(options.Device);
        }
        catch (ArgumentException e)
        {
            failures.Add($"Serving:Device: {e.Message}.");
        }

        if (options.ShutdownDrainSeconds is < 0 or > MaxShutdownDrainSeconds)
        {
            failures.Add($"Serving:ShutdownDrainSeconds is {options.ShutdownDrainSeconds}; it must be 0 to {MaxShutdownDrainSeconds} (an hour).");
        }

        ValidateAccess(options, failures);
        return failures.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(failures);
    }

    /// <summary>API keys and CORS origins: a blank key or an unreadable key file must not leave the server open unnoticed.</summary>
    private static void ValidateAccess(ServingOptions options, List<string> failures)
    {
        for (int i = 0; i < options.ApiKeys.Count; i++)
        {
            if (string.IsNullOrWhiteSpace(options.ApiKeys[i]))
            {
                failures.Add($"Serving:ApiKeys:{i} is empty.");
            }
        }

        if (options.ApiKeysFile is { } file)
        {
            if (ApiKeySet.ReadFile(file, out string? problem).Count == 0)
            {
                failures.Add($"Serving:ApiKeysFile '{file}' {problem ?? "holds no key (one a line; blank lines and # comments are skipped)"}.");
            }
        }

        if (options.RateLimit.RequestsPerMinute < 0)
        {
            failures.Add($"Serving:RateLimit:RequestsPerMinute is {options.RateLimit.RequestsPerMinute}; it must be 0 (no limit) or more.");
        }

        for (int i = 0; i < options.Cors.AllowedOrigins.Count; i++)
        {
            string origin = options.Cors.AllowedOrigins[i];
            bool isOrigin = origin == "*" || (Uri.TryCreate(origin, UriKind.Absolute, out Uri? uri)
                && uri.Scheme is "http" or "https" && uri.AbsolutePath == "/" && !origin.EndsWith('/') && uri.Query.Length == 0);
            if (!isOrigin)
            {
                failures.Add($"Serving:Cors:AllowedOrigins:{i} '{origin}' is not an origin (scheme://host[:port], no path) or *.");
            }
        }
    }
}
