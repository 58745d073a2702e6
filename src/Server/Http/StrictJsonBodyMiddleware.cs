using Serving.Server.Retrieval;

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
        if (!request.HasJsonContentType())
        {
            await next(context);
            return;
        }

        var body = new MemoryStream();
        context.Response.RegisterForDispose(body);
        await request.Body.CopyToAsync(body, context.RequestAborted);
        if (StrictJson.Validate(body.GetBuffer().AsSpan(0, (int)body.Length)) is { } problem)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, problem.Message, problem.Param, "invalid_json");
        }

        body.Position = 0;
        request.Body = body;
        await next(context);
    }
}
