using System.Text.Json.Serialization;

namespace Serving.Server.Http;

/// <summary>The body of every error: <c>{"error":{"message","type","param","code"}}</c> (REFERENCE §4).</summary>
public sealed record OpenAiErrorBody([property: JsonPropertyName("error")] OpenAiError Error);

public sealed record OpenAiError(
    [property: JsonPropertyName("message")] string Message,
    [property: JsonPropertyName("type")] string Type,
    [property: JsonPropertyName("param")] string? Param,
    [property: JsonPropertyName("code")] string? Code);

/// <summary>
/// The one place errors take the OpenAI shape. Handlers return these results; the
/// <see cref="OpenAiErrorMiddleware"/> maps what escapes a handler.
/// </summary>
public static class OpenAiErrors
{
    /// <summary>The one answer to a body that is not declared JSON, from every route (415).</summary>
    public const string NotJsonMessage = "The request body must be JSON (Content-Type: application/json).";

    public const string NotJsonCode = "invalid_json";

    /// <summary>The one <c>code</c> of every body over Serving:MaxRequestBodyBytes, whichever layer finds it (413).</summary>
    public const string TooLargeCode = "request_too_large";

    public static string TooLargeMessage(HttpContext context) =>
        $"The request body is larger than the server's limit of {context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpMaxRequestBodySizeFeature>()?.MaxRequestBodySize} bytes (Serving:MaxRequestBodyBytes).";

    public static IResult Create(int status, string message, string? param = null, string? code = null) =>
        TypedResults.Json(Body(status, message, param, code), statusCode: status);

    public static OpenAiErrorBody Body(int status, string message, string? param = null, string? code = null) =>
        new(new OpenAiError(message, TypeOf(status), param, code));

    /// <summary>400: an invalid parameter, named in <c>param</c>.</summary>
    public static IResult InvalidParameter(string param, string message) =>
        Create(StatusCodes.Status400BadRequest, message, param, "invalid_value");

    public static IResult BadRequest(string message, string? code = null) =>
        Create(StatusCodes.Status400BadRequest, message, null, code);

    public static IResult ModelNotFound(string model) =>
        Create(StatusCodes.Status404NotFound, $"The model '{model}' does not exist. GET /v1/models lists the models served.", "model", "model_not_found");

    public static IResult NotFound(string message, string? param = null) =>
        Create(StatusCodes.Status404NotFound, message, param, "not_found");

    /// <summary>
    /// What a body System.Text.Json could not read gets, for framework-bound and hand-read bodies alike: a value of the
    /// wrong type names its field (from the JSON path, <c>items[1].image</c>); broken syntax is invalid JSON.
    /// </summary>
    /// <param name="json">The serializer's error.</param>
    /// <param name="under">The field a nested value was read from (a union read by its handler), whose path the error's continues.</param>
    public static (string Message, string? Param, string Code) DescribeJson(System.Text.Json.JsonException json, string? under = null)
    {
        if (json.Path is not { } path)
        {
            return ("The request body is missing or not valid JSON.", under, "invalid_json");
        }

        string param = under is not null ? under + (path.Length > 0 ? path[1..] : "") : path.StartsWith("$.", StringComparison.Ordinal) ? path[2..] : path;
        bool isSyntax = json.Message.Contains("invalid", StringComparison.OrdinalIgnoreCase) && json.Message.Contains("LineNumber", StringComparison.Ordinal)
            && !json.Message.Contains("could not be converted", StringComparison.Ordinal);
        return isSyntax
            ? ($"The request body is not valid JSON (at {path}).", null, "invalid_json")
            : ($"The field '{param}' has the wrong type (see the API reference at /swagger).", param.Length > 0 && param != "$" ? param : null, "invalid_json");
    }

    /// <summary>The types OpenAI and its peers use, by status; clients switch on them.</summary>
    private static string TypeOf(int status) => status switch
    {
        StatusCodes.Status401Unauthorized => "authentication_error",
        StatusCodes.Status404NotFound => "invalid_request_error",
        StatusCodes.Status429TooManyRequests => "rate_limit_error",
        StatusCodes.Status503ServiceUnavailable => "server_error",
        >= 500 => "server_error",
        _ => "invalid_request_error",
    };
}

/// <summary>429 with <c>Retry-After</c>: the wait queue is full (TGI answers the same way).</summary>
public sealed class QueueFullResult(int retryAfterSeconds) : IResult
{
    public Task ExecuteAsync(HttpContext context)
    {
        context.Response.Headers.RetryAfter = retryAfterSeconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return OpenAiErrors.Create(StatusCodes.Status429TooManyRequests,
            "The server is at capacity: its wait queue is full. Retry after the number of seconds in the Retry-After header.",
            null, "queue_full").ExecuteAsync(context);
    }
}
