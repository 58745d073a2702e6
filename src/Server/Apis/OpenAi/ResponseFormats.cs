using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Generation.Structured;

namespace Serving.Server.Apis.OpenAi;

/// <summary>
/// OpenAI's <c>response_format</c> → the schema the engine constrains the output to: null for
/// text, any object for <c>json_object</c>, the compiled <c>json_schema.schema</c> otherwise.
/// Compiled schemas are kept by their JSON text (bounded), so a client that sends the same schema
/// again reuses the same automaton, and with it the token masks cached for its states.
/// </summary>
public static class ResponseFormats
{
    private const int CachedSchemas = 256;
    private static readonly ConcurrentDictionary<string, SchemaNode> Compiled = new(StringComparer.Ordinal);

    /// <summary>The schema (null: free text), or the reason the format is refused.</summary>
    public static (SchemaNode? Schema, string? Error) Read(JsonElement? format)
    {
        if (format is not { ValueKind: not JsonValueKind.Null } element)
        {
            return (null, null);
        }

        if (element.ValueKind != JsonValueKind.Object || !element.TryGetProperty("type", out JsonElement type) || type.ValueKind != JsonValueKind.String)
        {
            return (null, "response_format must be an object with a string type: text, json_object or json_schema.");
        }

        switch (type.GetString())
        {
            case "text":
                return (null, null);
            case "json_object":
                return (SchemaNode.AnyObject, null);
            case "json_schema":
                break;
            default:
                return (null, $"response_format type '{type.GetString()}' is not one of text, json_object, json_schema.");
        }

        if (!element.TryGetProperty("json_schema", out JsonElement spec) || spec.ValueKind != JsonValueKind.Object)
        {
            return (null, "response_format json_schema needs a json_schema object with a name and a schema.");
        }

        if (!spec.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String || name.GetString() is not { Length: > 0 and <= 64 })
        {
            return (null, "response_format.json_schema.name must be a string of 1 to 64 characters.");
        }

        if (!spec.TryGetProperty("schema", out JsonElement schema) || schema.ValueKind is JsonValueKind.Null or JsonValueKind.Undefined)
        {
            return (SchemaNode.AnyValue, null);
        }

        string text = schema.GetRawText();
        if (Compiled.TryGetValue(text, out SchemaNode? known))
        {
            return (known, null);
        }

        try
        {
            SchemaNode compiled = JsonSchemaCompiler.Compile(JsonNode.Parse(text));
            if (Compiled.Count >= CachedSchemas)
            {
                Compiled.Clear();
            }

            Compiled[text] = compiled;
            return (compiled, null);
        }
        catch (UnsupportedSchemaException e)
        {
            return (null, $"response_format.json_schema.schema: {e.Message}");
        }
    }
}
