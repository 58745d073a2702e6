using Microsoft.AspNetCore.Http.Features;
using Microsoft.Net.Http.Headers;

namespace Serving.Server.Http;

/// <summary>
/// Reads every JSON request body once, before routing binds it, and refuses one that is not
/// strict JSON (<see cref="StrictJson"/>) with a 400 naming the field; the handlers then read
/// the same bytes from memory. Reading here also applies the body size limit in one place, so
/// every route answers an oversized body with the same 413. The handlers read whole bodies
/// anyway, so this adds one copy of the body (at most Serving:MaxRequestBodyBytes) for the
/// request's duration and one pass over it (UTF-8 checked in place, about 1 GB/s).
/// </summary>
public sealed class StrictJsonBodyMiddleware(RequestDelegate next)
{
    public async Task InvokeAsync(HttpContext context)
    {
        HttpRequest request = context.Request;
        if (!request.HasJsonContentType() || !IsUtf8(request))
        {
            await next(context);
            return;
        }

        // Sized from Content-Length when the server's limit allows it, so a 16 MB upload is not copied while the buffer doubles.
        long? limit = context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;
        var body = new MemoryStream(request.ContentLength is long length && length <= (limit ?? 0) ? (int)length : 0);
        context.Response.RegisterForDispose(body);
        await request.Body.CopyToAsync(body, context.RequestAborted);
        // An empty body (a GET or DELETE sent with a JSON content type) is left to the route, which may need none.
        if (body.Length > 0 && StrictJson.Validate(body.GetBuffer().AsSpan(0, (int)body.Length)) is { } problem)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, problem.Message, problem.Param, "invalid_json");
        }

        body.Position = 0;
        request.Body = body;
        await next(context);
    }

    /// <summary>A body in another charset (application/json; charset=utf-16) is left to the binders, which transcode it.</summary>
    private static bool IsUtf8(HttpRequest request) =>
        !MediaTypeHeaderValue.TryParse(request.ContentType, out MediaTypeHeaderValue? type) || type.Charset.Length == 0
        || type.Charset.Equals("utf-8", StringComparison.OrdinalIgnoreCase) || type.Charset.Equals("utf8", StringComparison.OrdinalIgnoreCase);
}
