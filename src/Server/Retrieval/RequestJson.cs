using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization.Metadata;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>Reads the bodies a handler reads itself (typed, like the framework's) and JSON texts inside form fields, with errors that name the field.</summary>
public static class RequestJson
{
    /// <summary>A key twice is refused here too, though <see cref="Http.StrictJsonBodyMiddleware"/> finds it first with its path.</summary>
    private static readonly JsonDocumentOptions Strict = new() { AllowDuplicateProperties = false };

    /// <summary>
    /// A typed body the handler reads itself (a route that also takes multipart); 415 unless its Content-Type is JSON.
    /// Browsers send text/plain (and forms) cross-origin without a preflight, so accepting them would let any web page
    /// post to the server. A value of the wrong type is a 400 naming the field, as for framework-bound bodies.
    /// </summary>
    public static async Task<T> ReadAsync<T>(HttpRequest request, JsonTypeInfo<T> type)
    {
        if (!request.HasJsonContentType())
        {
            throw new ApiException(StatusCodes.Status415UnsupportedMediaType, Http.OpenAiErrors.NotJsonMessage, null, Http.OpenAiErrors.NotJsonCode);
        }

        try
        {
            return await JsonSerializer.DeserializeAsync(request.Body, type, request.HttpContext.RequestAborted)
                ?? throw new ApiException(StatusCodes.Status400BadRequest, "The body must be a JSON object.", null, "invalid_json");
        }
        catch (JsonException e)
        {
            var (message, param, code) = Http.OpenAiErrors.DescribeJson(e);
            throw new ApiException(StatusCodes.Status400BadRequest, message, param, code);
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
}
