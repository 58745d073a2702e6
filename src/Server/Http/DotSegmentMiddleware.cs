using Microsoft.AspNetCore.Http.Features;

namespace Serving.Server.Http;

/// <summary>
/// Refuses a request target with a "." or ".." segment, raw or percent-encoded (%2E), before
/// routing. Kestrel removes dot segments (after decoding %2E) before the app sees the path, so
/// <c>DELETE /v1/collections/c/items/..</c> would route as <c>DELETE /v1/collections/c</c> and
/// delete the whole collection. No route of this server has such a segment, and no item id
/// may be one, so a 400 refuses nothing that could succeed.
/// </summary>
public sealed class DotSegmentMiddleware(RequestDelegate next)
{
    public Task InvokeAsync(HttpContext context)
    {
        string? target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        return target is not null && HasDotSegment(target)
            ? throw new ApiException(StatusCodes.Status400BadRequest,
                "The request path has a dot segment ('.' or '..', raw or percent-encoded); no route takes one, and no item id may be one.", null, "invalid_path")
            : next(context);
    }

    /// <summary>True when a segment of the target's path, percent-decoded, is "." or "..".</summary>
    public static bool HasDotSegment(string target)
    {
        ReadOnlySpan<char> path = target.AsSpan();
        int query = path.IndexOfAny('?', '#');
        path = query < 0 ? path : path[..query];
        int scheme = path.IndexOf("://", StringComparison.Ordinal);
        if (scheme >= 0)
        {
            // Absolute form (http://host/path): only the path counts.
            path = path[(scheme + 3)..];
            int slash = path.IndexOf('/');
            path = slash < 0 ? [] : path[slash..];
        }

        foreach (Range range in path.Split('/'))
        {
            // The longest spelling of a dot segment is "%2E%2E": 6 characters.
            ReadOnlySpan<char> segment = path[range];
            if (segment.Length is > 0 and <= 6 && Uri.UnescapeDataString(segment.ToString()) is "." or "..")
            {
                return true;
            }
        }

        return false;
    }
}
