using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Runtime.Generation.Structured;

/// <summary>The JSON kinds a schema allows.</summary>
[Flags]
public enum JsonKinds
{
    None = 0,
    Object = 1,
    Array = 2,
    String = 4,
    Number = 8,
    Integer = 16,
    Boolean = 32,
    Null = 64,
    Any = Object | Array | String | Number | Integer | Boolean | Null,
}

/// <summary>One property of an object schema, in the order the schema lists it.</summary>
public sealed record SchemaProperty(string Name, byte[] KeyBytes, bool Required, Func<SchemaNode> Schema);

/// <summary>
/// A compiled JSON Schema node: what a value may be. Reference-typed (identity equality), and
/// cyclic through <c>$ref</c> for recursive schemas.
/// </summary>
public sealed class SchemaNode
{
    public JsonKinds Kinds { get; init; } = JsonKinds.Any;

    /// <summary>Listed properties (the output writes them in this order; optional ones may be left out).</summary>
    public IReadOnlyList<SchemaProperty> Properties { get; init; } = [];

    /// <summary>An object with no listed properties: any keys and values (json_object mode, free-form objects).</summary>
    public bool FreeFormObject { get; init; }

    public Func<SchemaNode>? Items { get; init; }

    public int MinItems { get; init; }

    public int MaxItems { get; init; } = int.MaxValue;

    public int MinLength { get; init; }

    public int MaxLength { get; init; } = int.MaxValue;

    /// <summary>enum / const: the allowed values, each as compact JSON bytes; null when unrestricted.</summary>
    public IReadOnlyList<byte[]>? Literals { get; init; }

    /// <summary>anyOf: the alternatives; null when none.</summary>
    public IReadOnlyList<Func<SchemaNode>>? AnyOf { get; init; }

    /// <summary>Any JSON value (<c>true</c> or <c>{}</c>).</summary>
    public static SchemaNode AnyValue { get; } = new() { FreeFormObject = true, Items = () => AnyValue! };

    /// <summary>Any JSON object: <c>response_format: {"type": "json_object"}</c>.</summary>
    public static SchemaNode AnyObject { get; } = new() { Kinds = JsonKinds.Object, FreeFormObject = true };
}

/// <summary>A schema the constrained decoder cannot enforce: the keyword (or path) at fault and why.</summary>
public sealed class UnsupportedSchemaException(string keyword, string reason) : Exception($"'{keyword}': {reason}")
{
    public string Keyword { get; } = keyword;
}

/// <summary>
/// Compiles the JSON Schema subset OpenAI's strict structured outputs accept: <c>type</c> (one or
/// a list), objects with <c>properties</c>, <c>required</c> and <c>additionalProperties</c>,
/// <c>enum</c>, <c>const</c>, <c>anyOf</c>, arrays with <c>items</c>, <c>minItems</c>, <c>maxItems</c>,
/// strings with <c>minLength</c>/<c>maxLength</c>, numbers, integers, booleans, null, and
/// <c>$defs</c>/<c>definitions</c> with local <c>$ref</c>s (recursion allowed). Annotations
/// (<c>title</c>, <c>description</c>, <c>default</c>, <c>examples</c>, <c>format</c>, <c>$schema</c>, <c>$id</c>,
/// <c>$comment</c>) are ignored. Any other keyword (<c>pattern</c>, <c>minimum</c>, <c>allOf</c>, <c>oneOf</c>…)
/// is refused by name rather than silently not enforced.
/// </summary>
public static class JsonSchemaCompiler
{
    public const int MaxNesting = 32;
    public const int MaxEnumValues = 1024;
    public const int MaxNodes = 4096;

    private static readonly HashSet<string> Annotations =
        ["title", "description", "default", "examples", "format", "$schema", "$id", "$comment", "$defs", "definitions", "deprecated", "readOnly", "writeOnly"];

    private static readonly HashSet<string> Supported =
        ["type", "properties", "required", "additionalProperties", "items", "minItems", "maxItems", "enum", "const", "anyOf", "$ref", "minLength", "maxLength"];

    public static SchemaNode Compile(JsonNode? schema)
    {
        var context = new Context(schema);
        return context.Node(schema, "#", 0);
    }

    private sealed class Context(JsonNode? root)
    {
        private readonly Dictionary<string, SchemaNode> _refs = [];
        private readonly HashSet<string> _resolving = [];
        private int _nodes;

        public SchemaNode Node(JsonNode? schema, string path, int depth)
        {
            if (++_nodes > MaxNodes)
            {
                throw new UnsupportedSchemaException(path, $"the schema has more than {MaxNodes} subschemas");
            }

            if (depth > MaxNesting)
            {
                throw new UnsupportedSchemaException(path, $"nested more than {MaxNesting} levels deep");
            }

            if (schema is JsonValue boolean && boolean.TryGetValue(out bool value))
            {
                return value ? SchemaNode.AnyValue : throw new UnsupportedSchemaException(path, "the schema 'false' allows no value");
            }

            if (schema is not JsonObject obj)
            {
                throw new UnsupportedSchemaException(path, "a schema must be an object or a boolean");
            }

            foreach (var (keyword, _) in obj)
            {
                if (!Supported.Contains(keyword) && !Annotations.Contains(keyword))
                {
                    throw new UnsupportedSchemaException(keyword, "is not supported by constrained decoding (supported: " + string.Join(", ", Supported.Order(StringComparer.Ordinal)) + ")");
                }
            }

            if (obj["$ref"] is { } reference)
            {
                if (obj.Count(p => !Annotations.Contains(p.Key)) > 1)
                {
                    throw new UnsupportedSchemaException("$ref", "beside other constraints is not supported (put them in the referenced schema)");
                }

                string target = reference is JsonValue v && v.TryGetValue(out string? s) ? s : throw new UnsupportedSchemaException("$ref", "must be a string");
                return Resolve(target, depth);
            }

            var literals = Literals(obj);
            if (obj["anyOf"] is { } anyOf)
            {
                if (anyOf is not JsonArray alternatives || alternatives.Count == 0)
                {
                    throw new UnsupportedSchemaException("anyOf", "must be a non-empty array of schemas");
                }

                var compiled = alternatives.Select((alternative, i) => Node(alternative, $"{path}/anyOf/{i}", depth + 1)).ToList();
                return new SchemaNode { AnyOf = [.. compiled.Select(node => (Func<SchemaNode>)(() => node))], Literals = literals, Kinds = JsonKinds.Any };
            }

            JsonKinds kinds = Kinds(obj);
            var properties = new List<SchemaProperty>();
            bool freeForm = false;
            if (kinds.HasFlag(JsonKinds.Object))
            {
                var required = obj["required"] is JsonArray list
                    ? list.Select(item => item is JsonValue r && r.TryGetValue(out string? name) ? name : throw new UnsupportedSchemaException("required", "must list property names")).ToHashSet()
                    : obj["required"] is null ? [] : throw new UnsupportedSchemaException("required", "must be an array of property names");
                if (obj["properties"] is JsonObject props)
                {
                    foreach (var (name, propertySchema) in props)
                    {
                        SchemaNode node = Node(propertySchema, $"{path}/properties/{name}", depth + 1);
                        properties.Add(new SchemaProperty(name, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(name) + ":"), required.Contains(name), () => node));
                    }
                }
                else if (obj["properties"] is not null)
                {
                    throw new UnsupportedSchemaException("properties", "must be an object");
                }

                if (required.FirstOrDefault(name => properties.All(p => p.Name != name)) is { } missing)
                {
                    throw new UnsupportedSchemaException("required", $"names '{missing}', which 'properties' does not define");
                }

                bool additional = obj["additionalProperties"] switch
                {
                    null => true,
                    JsonValue b when b.TryGetValue(out bool allowed) => allowed,
                    JsonObject => throw new UnsupportedSchemaException("additionalProperties", "as a schema is not supported (use true, false or leave it out)"),
                    _ => throw new UnsupportedSchemaException("additionalProperties", "must be a boolean"),
                };

                // Listed properties are written, nothing else (valid whether or not more were allowed);
                // an object with no listed properties and extra keys allowed is free-form.
                freeForm = properties.Count == 0 && additional;
            }

            Func<SchemaNode>? items = null;
            if (obj["items"] is { } itemSchema)
            {
                SchemaNode node = Node(itemSchema, $"{path}/items", depth + 1);
                items = () => node;
            }
            else if (kinds.HasFlag(JsonKinds.Array))
            {
                items = () => SchemaNode.AnyValue;
            }

            int minItems = Count(obj, "minItems", 0), maxItems = Count(obj, "maxItems", int.MaxValue);
            int minLength = Count(obj, "minLength", 0), maxLength = Count(obj, "maxLength", int.MaxValue);
            if (minItems > maxItems)
            {
                throw new UnsupportedSchemaException("minItems", $"{minItems} is more than maxItems {maxItems}");
            }

            if (minLength > maxLength)
            {
                throw new UnsupportedSchemaException("minLength", $"{minLength} is more than maxLength {maxLength}");
            }

            return new SchemaNode
            {
                Kinds = kinds,
                Properties = properties,
                FreeFormObject = freeForm,
                Items = items,
                MinItems = minItems,
                MaxItems = maxItems,
                MinLength = minLength,
                MaxLength = maxLength,
                Literals = literals,
            };
        }

        /// <summary>A local reference, compiled once (a recursive schema refers back to its own node).</summary>
        private SchemaNode Resolve(string reference, int depth)
        {
            if (_refs.TryGetValue(reference, out SchemaNode? known))
            {
                return known;
            }

            string[] parts = reference.Split('/');
            if (parts.Length != 3 || parts[0] != "#" || parts[1] is not ("$defs" or "definitions"))
            {
                throw new UnsupportedSchemaException("$ref", $"'{reference}' is not a local '#/$defs/NAME' reference");
            }

            JsonNode? target = root?[parts[1]]?[parts[2]] ?? throw new UnsupportedSchemaException("$ref", $"'{reference}' does not exist");
            if (!_resolving.Add(reference))
            {
                // A cycle: the node is being compiled; hand out a forwarding node that reads it later.
                return new SchemaNode { AnyOf = [() => _refs[reference]], Kinds = JsonKinds.Any };
            }

            SchemaNode node = Node(target, reference, depth + 1);
            _refs[reference] = node;
            _resolving.Remove(reference);
            return node;
        }

        private static JsonKinds Kinds(JsonObject obj)
        {
            JsonNode? type = obj["type"];
            if (type is null)
            {
                return JsonKinds.Any;
            }

            List<JsonNode?> names = type is JsonArray array ? [.. array] : new List<JsonNode?> { type };
            JsonKinds kinds = JsonKinds.None;
            foreach (JsonNode? name in names)
            {
                kinds |= (name is JsonValue v && v.TryGetValue(out string? s) ? s : null) switch
                {
                    "object" => JsonKinds.Object,
                    "array" => JsonKinds.Array,
                    "string" => JsonKinds.String,
                    "number" => JsonKinds.Number,
                    "integer" => JsonKinds.Integer,
                    "boolean" => JsonKinds.Boolean,
                    "null" => JsonKinds.Null,
                    _ => throw new UnsupportedSchemaException("type", $"unknown type {name?.ToJsonString() ?? "null"}"),
                };
            }

            return kinds == JsonKinds.None ? throw new UnsupportedSchemaException("type", "lists no type") : kinds;
        }

        private static List<byte[]>? Literals(JsonObject obj)
        {
            if (obj.ContainsKey("const"))
            {
                return [Encoding.UTF8.GetBytes(obj["const"]?.ToJsonString() ?? "null")];
            }

            if (!obj.ContainsKey("enum"))
            {
                return null;
            }

            if (obj["enum"] is not JsonArray values || values.Count == 0)
            {
                throw new UnsupportedSchemaException("enum", "must be a non-empty array");
            }

            if (values.Count > MaxEnumValues)
            {
                throw new UnsupportedSchemaException("enum", $"has {values.Count} values; at most {MaxEnumValues} are supported");
            }

            return [.. values.Select(value => Encoding.UTF8.GetBytes(value?.ToJsonString() ?? "null")).DistinctBy(Convert.ToHexString)];
        }

        private static int Count(JsonObject obj, string keyword, int fallback) => obj[keyword] switch
        {
            null => fallback,
            JsonValue v when v.TryGetValue(out int n) && n >= 0 => n,
            JsonValue v when v.TryGetValue(out double d) && d >= 0 && d == Math.Floor(d) => d > int.MaxValue ? int.MaxValue : (int)d,
            _ => throw new UnsupportedSchemaException(keyword, "must be a non-negative integer"),
        };
    }
}
