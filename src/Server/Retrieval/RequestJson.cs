using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Retrieval;

/// <summary>Reads request bodies and fields with errors that name the field.</summary>
public static class RequestJson
{
    /// <summary>A key twice is refused here too, though <see cref="Http.StrictJsonBodyMiddleware"/> finds it first with its path.</summary>
    private static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false };

    /// <summary>
    /// The body as a JSON object; 415 unless its Content-Type is JSON. Browsers send text/plain (and forms)
    /// cross-origin without a preflight, so accepting them would let any web page post to the server.
    /// </summary>
    public static async Task<JsonObject> ReadObjectAsync(HttpRequest request)
    {
        if (!request.HasJsonContentType())
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType, Http.OpenAiErrors.NotJsonMessage, null, Http.OpenAiErrors.NotJsonCode);
        }

        try
        {
            JsonNode? node = await JsonNode.ParseAsync(request.Body, documentOptions: Strict, cancellationToken: request.HttpContext.RequestAborted);
            return node as JsonObject ?? throw new ApiException(StatusCodes.Status400BadRequest, "The body must be a JSON object.", null, "invalid_json");
        }
        catch (JsonException e)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, $"The body is not valid JSON: {e.Message}", null, "invalid_json");
        }
    }

    /// <summary>A JSON text from outside a JSON body (a multipart field), read as strictly: errors name <paramref name="param"/> and the path in it.</summary>
    public static JsonNode? Parse(string text, string param)
    {
        if (Http.StrictJson.Validate(System.Text.Encoding.UTF8.GetBytes(text), param) is { } problem)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, problem.Message, problem.Param, "invalid_json");
        }

        return JsonNode.Parse(text, documentOptions: Strict);
    }

    public static string? OptionalString(JsonObject json, string name, string? prefix = null) =>
        json[name] switch
        {
            null => null,
            JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
            _ => throw ApiException.Invalid(prefix + name, $"{name} must be a string"),
        };

    public static string RequiredString(JsonObject json, string name) =>
        OptionalString(json, name) ?? throw ApiException.Invalid(name, $"{name} is required");

    public static JsonObject? OptionalObject(JsonObject json, string name, string? param = null) =>
        json[name] switch
        {
            null => null,
            JsonObject value => value,
            _ => throw ApiException.Invalid(param ?? name, $"{name} must be a JSON object"),
        };

    public static int OptionalInt(JsonObject json, string name, int fallback) =>
        json[name] switch
        {
            null => fallback,
            JsonValue value when value.GetValueKind() == JsonValueKind.Number && value.TryGetValue(out int number) => number,
            _ => throw ApiException.Invalid(name, $"{name} must be an integer"),
        };

    public static bool? OptionalBool(JsonObject json, string name) =>
        json[name]?.GetValueKind() switch
        {
            null => null,
            JsonValueKind.True => true,
            JsonValueKind.False => false,
            _ => throw ApiException.Invalid(name, $"{name} must be true or false"),
        };

    public static float[]? OptionalFloats(JsonObject json, string name)
    {
        if (json[name] is null)
        {
            return null;
        }

        if (json[name] is JsonArray array && array.All(v => v?.GetValueKind() == JsonValueKind.Number))
        {
            return [.. array.Select(v => v!.GetValue<float>())];
        }

        throw ApiException.Invalid(name, $"{name} must be an array of numbers");
    }
}
