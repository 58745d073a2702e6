using Microsoft.AspNetCore.Http.Features;

namespace Serving.Server.Http;

/// <summary>
/// Turns what escapes a handler into the OpenAI error shape: ASP.NET Core's
/// <see cref="BadHttpRequestException"/> keeps its status (413 for a body over the limit,
/// 400 for a malformed one); anything else is a 500 whose details stay in the log.
/// Handlers validate their own input, so a 500 here is a bug, never bad input.
/// </summary>
public sealed class OpenAiErrorMiddleware(RequestDelegate next, ILogger<OpenAiErrorMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            string message = e.StatusCode == StatusCodes.Status413PayloadTooLarge
                ? $"The request body is larger than the limit of {MaxBodyBytes(context)} bytes."
                : e.Message;
            await Write(context, e.StatusCode, message, e.StatusCode == StatusCodes.Status413PayloadTooLarge ? "request_too_large" : "invalid_request");
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            logger.LogDebug("{Path}: the client went away", context.Request.Path);
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await Write(context, StatusCodes.Status500InternalServerError, "The server failed to process the request; its log has the details.", "internal_error");
        }
    }

    private static long? MaxBodyBytes(HttpContext context) =>
        context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize;

    private static Task Write(HttpContext context, int status, string message, string code)
    {
        context.Response.Clear();
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(OpenAiErrors.Body(status, message, null, code));
    }
}
