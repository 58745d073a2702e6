using Microsoft.Extensions.Options;
using Serving.Server.Apis;
using Serving.Server.Hosting;

namespace Serving.Server.Http;

/// <summary>
/// With API keys configured (<see cref="ApiKeySet"/>), refuses a request that does not carry one with 401
/// in the OpenAI shape and <c>WWW-Authenticate: Bearer</c>, as OpenAI and vLLM's and llama.cpp's
/// <c>--api-key</c> do. The key comes as <c>Authorization: Bearer KEY</c> (OpenAI's SDKs) or
/// <c>x-api-key: KEY</c> (Anthropic-style clients). The health probes are always open (orchestrators
/// send no key); <c>/metrics</c> and <c>/dashboard</c> too unless <c>Serving:ProtectMetrics</c>.
/// Every other path needs a key, unknown ones included, so a caller without one learns no route.
/// </summary>
public sealed class ApiKeyMiddleware(RequestDelegate next, ApiKeySet keys, IOptions<ServingOptions> options)
{
    private const string BearerPrefix = "Bearer ";

    private readonly bool _protectMetrics = options.Value.ProtectMetrics;

    public Task InvokeAsync(HttpContext context)
    {
        if (!keys.IsEnabled || IsOpen(context.Request.Path))
        {
            return next(context);
        }

        string? key = PresentedKey(context.Request);
        int index = key is null ? -1 : keys.IndexOf(key);
        if (index >= 0)
        {
            context.Features.Set(new ApiKeyFeature(index));
            return next(context);
        }

        context.Response.Headers.WWWAuthenticate = "Bearer";
        string message = key is null
            ? "This server needs an API key: send it in the header 'Authorization: Bearer YOUR_KEY'."
            : "The API key sent is not one of this server's keys.";
        return OpenAiErrors.Create(StatusCodes.Status401Unauthorized, message, null, "invalid_api_key").ExecuteAsync(context);
    }

    /// <summary>Paths open without a key. PathString compares ignoring case, as routing does.</summary>
    private bool IsOpen(PathString path) =>
        path.Equals(HealthApi.LivePath) || path.Equals(HealthApi.ReadyPath)
        || (!_protectMetrics && (path.Equals(TelemetryHostExtensions.MetricsPath) || path.StartsWithSegments(DashboardApi.Path)));

    /// <summary>The bearer token, else the x-api-key header, else null (a header of another scheme counts as no key).</summary>
    private static string? PresentedKey(HttpRequest request)
    {
        string? authorization = request.Headers.Authorization;
        if (!string.IsNullOrEmpty(authorization))
        {
            return authorization.StartsWith(BearerPrefix, StringComparison.OrdinalIgnoreCase) ? authorization[BearerPrefix.Length..].Trim() : null;
        }

        string? apiKey = request.Headers["x-api-key"];
        return string.IsNullOrEmpty(apiKey) ? null : apiKey.Trim();
    }
}
