using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Retrieval;

/// <summary>
/// Reads an item's stored metadata. Uploads refuse a key twice now, but a store written by an
/// earlier version may hold <c>{"k":1,"k":2}</c>, which a <see cref="JsonObject"/> parsed lazily
/// would throw on at the first filter, on every search of the collection. Built here eagerly,
/// a repeated key keeps its last value (what JavaScript's JSON.parse does).
/// </summary>
public static class StoredMetadata
{
    /// <summary>The metadata object; <paramref name="hadDuplicates"/> tells whether a key appeared twice at any depth.</summary>
    public static JsonObject Parse(string text, out bool hadDuplicates)
    {
        using JsonDocument document = JsonDocument.Parse(text);
        hadDuplicates = false;
        return Build(document.RootElement, ref hadDuplicates) as JsonObject ?? [];
    }

    private static JsonNode? Build(JsonElement element, ref bool hadDuplicates)
    {
        switch (element.ValueKind)
        {
            case JsonValueKind.Object:
                var json = new JsonObject();
                foreach (JsonProperty property in element.EnumerateObject())
                {
                    hadDuplicates |= json.Remove(property.Name);
                    json[property.Name] = Build(property.Value, ref hadDuplicates);
                }

                return json;
            case JsonValueKind.Array:
                var array = new JsonArray();
                foreach (JsonElement item in element.EnumerateArray())
                {
                    array.Add(Build(item, ref hadDuplicates));
                }

                return array;
            case JsonValueKind.Null:
                return null;
            default:
                return JsonValue.Create(element.Clone());
        }
    }
}
