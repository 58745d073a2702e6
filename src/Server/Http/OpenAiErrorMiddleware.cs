using Microsoft.AspNetCore.Http.Features;
using Serving.Server.Retrieval;

namespace Serving.Server.Http;

/// <summary>
/// Turns what escapes a handler into the OpenAI error shape: an <see cref="ApiException"/>
/// (from a handler, or from a middleware before routing) keeps its status; ASP.NET Core's
/// <see cref="BadHttpRequestException"/> too (413 for a body over the limit, 400 for a
/// malformed one); anything else is a 500 whose details stay in the log.
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
        catch (ApiException e) when (!context.Response.HasStarted)
        {
            await Write(context, e.Status, e.Message, e.Param, e.Code);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            if (e.StatusCode == StatusCodes.Status413PayloadTooLarge || e.InnerException is BadHttpRequestException { StatusCode: 413 })
            {
                await Write(context, StatusCodes.Status413PayloadTooLarge, TooLargeMessage(context), null, "request_too_large");
                return;
            }

            var (message, param) = Describe(e);
            await Write(context, StatusCodes.Status400BadRequest, message, param, "invalid_json");
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            logger.LogDebug("{Path}: the client went away", context.Request.Path);
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await Write(context, StatusCodes.Status500InternalServerError, "The server failed to process the request; its log has the details.", null, "internal_error");
        }
    }

    public static string TooLargeMessage(HttpContext context) =>
        $"The request body is larger than the server's limit of {context.Features.Get<IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes (Serving:MaxRequestBodyBytes).";

    /// <summary>A body that is not JSON, or a field of the wrong type: the message and the field (from the JSON path).</summary>
    private static (string Message, string? Param) Describe(BadHttpRequestException e)
    {
        if (e.InnerException is System.Text.Json.JsonException { Path: { } path } json)
        {
            string param = path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path;
            bool isSyntax = json.Message.Contains("invalid", StringComparison.OrdinalIgnoreCase) && json.Message.Contains("LineNumber", StringComparison.Ordinal)
                && !json.Message.Contains("could not be converted", StringComparison.Ordinal);
            return isSyntax
                ? ($"The request body is not valid JSON (at {path}).", null)
                : ($"The field '{param}' has the wrong type (see the API reference at /swagger).", param.Length > 0 && param != "$" ? param : null);
        }

        return e.StatusCode == StatusCodes.Status415UnsupportedMediaType
            ? ("The request body must be JSON (Content-Type: application/json).", null)
            : ("The request body is missing or not valid JSON.", null);
    }

    private static Task Write(HttpContext context, int status, string message, string? param, string? code)
    {
        context.Response.Clear();
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(OpenAiErrors.Body(status, message, param, code));
    }
}
