using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Retrieval;

/// <summary>
/// The two upload forms of <c>POST /v1/collections/{name}/items</c>: JSON
/// <c>{"items":[{"id"?, "image", "metadata"?}]}</c>, or multipart with image files (in order)
/// plus optional fields <c>metadata</c> (a JSON array, one object per file) and <c>ids</c>
/// (a JSON array of strings, one per file).
/// </summary>
public static class ItemUploads
{
    public static IReadOnlyList<NewItem> ReadJson(JsonObject body, int maxItems)
    {
        if (body["items"] is not JsonArray items)
        {
            throw ApiException.Invalid("items", "items must be an array of {\"id\"?, \"image\", \"metadata\"?}");
        }

        if (items.Count == 0 || items.Count > maxItems)
        {
            throw ApiException.Invalid("items", $"send 1 to {maxItems} items per request (got {items.Count})");
        }

        return [.. items.Select((node, i) =>
        {
            string param = $"items[{i}]";
            JsonObject item = node as JsonObject ?? throw ApiException.Invalid(param, "an item must be an object");
            string image = RequestJson.OptionalString(item, "image", param + ".") ?? throw ApiException.Invalid(param + ".image", "image is required");
            return new NewItem(
                RequestJson.OptionalString(item, "id", param + "."),
                ImageInput.DecodeBase64(image, param + ".image"),
                (JsonObject?)RequestJson.OptionalObject(item, "metadata", param + ".metadata")?.DeepClone() ?? []);
        })];
    }

    public static async Task<IReadOnlyList<NewItem>> ReadMultipartAsync(HttpRequest request)
    {
        IFormCollection form = await request.ReadFormAsync(request.HttpContext.RequestAborted);
        if (form.Files.Count == 0)
        {
            throw ApiException.Invalid("files", "a multipart upload needs at least one image file");
        }

        JsonArray? metadata = ArrayField(form, "metadata", form.Files.Count);
        JsonArray? ids = ArrayField(form, "ids", form.Files.Count);
        var items = new List<NewItem>(form.Files.Count);
        for (int i = 0; i < form.Files.Count; i++)
        {
            using var buffer = new MemoryStream();
            await form.Files[i].CopyToAsync(buffer, request.HttpContext.RequestAborted);
            JsonObject itemMetadata = metadata?[i] switch
            {
                null => [],
                JsonObject value => (JsonObject)value.DeepClone(),
                _ => throw ApiException.Invalid($"metadata[{i}]", "each metadata entry must be an object"),
            };
            string? id = ids?[i] switch
            {
                null => null,
                JsonValue value when value.GetValueKind() == JsonValueKind.String => value.GetValue<string>(),
                _ => throw ApiException.Invalid($"ids[{i}]", "each id must be a string"),
            };
            items.Add(new NewItem(id, buffer.ToArray(), itemMetadata));
        }

        return items;
    }

    private static JsonArray? ArrayField(IFormCollection form, string name, int count)
    {
        if (!form.TryGetValue(name, out var values))
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(values.ToString()) is JsonArray array && array.Count == count
                ? array
                : throw ApiException.Invalid(name, $"{name} must be a JSON array with one entry per file ({count})");
        }
        catch (JsonException)
        {
            throw ApiException.Invalid(name, $"{name} is not valid JSON");
        }
    }
}
