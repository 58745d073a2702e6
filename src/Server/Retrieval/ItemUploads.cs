using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>
/// The two upload forms of <c>POST /v1/collections/{name}/items</c>: JSON
/// <c>{"items":[{"id"?, "image", "metadata"?}]}</c> (<see cref="UploadItemsRequest"/>), or multipart with image files (in order)
/// plus optional fields <c>metadata</c> (a JSON array, one object per file) and <c>ids</c>
/// (a JSON array of strings, one per file).
/// </summary>
public static class ItemUploads
{
    /// <summary>The longest item id; ids are path segments of GET and DELETE.</summary>
    public const int MaxIdLength = 256;

    private static readonly System.Buffers.SearchValues<char> ForbiddenInIds = System.Buffers.SearchValues.Create("/\\");

    public static IReadOnlyList<NewItem> ReadJson(UploadItemsRequest body, int maxItems)
    {
        if (body.Items is not { } items)
        {
            throw ApiException.Invalid("items", "items must be an array of {\"id\"?, \"image\", \"metadata\"?}");
        }

        if (items.Count == 0 || items.Count > maxItems)
        {
            throw ApiException.Invalid("items", $"send 1 to {maxItems} items per request (got {items.Count})");
        }

        return [.. items.Select((item, i) =>
        {
            string param = $"items[{i}]";
            if (item is null)
            {
                throw ApiException.Invalid(param, "an item must be an object");
            }

            string image = item.Image ?? throw ApiException.Invalid(param + ".image", "image is required");
            return new NewItem(
                item.Id is null ? null : ValidId(item.Id, param + ".id"),
                ImageInput.DecodeBase64(image, param + ".image"),
                item.Metadata ?? []);
        })];
    }

    /// <summary>multipart/form-data; any other body (a urlencoded form included) is read as JSON, which refuses what is not.</summary>
    public static bool IsMultipart(HttpRequest request) =>
        Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(request.ContentType, out var type)
        && type.MediaType.Equals("multipart/form-data", StringComparison.OrdinalIgnoreCase);

    public static async Task<IReadOnlyList<NewItem>> ReadMultipartAsync(HttpRequest request)
    {
        IFormCollection form = await ReadFormAsync(request);
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
                JsonValue value when value.GetValueKind() == JsonValueKind.String => ValidId(value.GetValue<string>(), $"ids[{i}]"),
                _ => throw ApiException.Invalid($"ids[{i}]", "each id must be a string"),
            };
            items.Add(new NewItem(id, buffer.ToArray(), itemMetadata));
        }

        return items;
    }

    /// <summary>
    /// An id must be usable as the last segment of <c>/v1/collections/{name}/items/{id}</c>, or the
    /// item could be stored but never read or deleted: 1–256 characters, no '/' or '\' (a
    /// percent-encoded %2F stays encoded in the routed path, so no id with '/' ever matches), no
    /// control character (NUL included: Kestrel refuses %00 in a path), and not "." or ".."
    /// (dot segments, which the server refuses in every path).
    /// </summary>
    public static string ValidId(string id, string param) =>
        id.Length is 0 or > MaxIdLength || id is "." or ".." || id.AsSpan().IndexOfAny(ForbiddenInIds) >= 0 || id.Any(char.IsControl)
            ? throw ApiException.Invalid(param, $"an id is 1 to {MaxIdLength} characters, not '.' or '..', without '/', '\\' or control characters")
            : id;

    /// <summary>
    /// The form, or a 400 when the multipart body is malformed: no boundary or one over 70
    /// characters, a body that ends early, a part without headers, over 1,024 parts (FormOptions'
    /// limits). A body over the size limit (<see cref="BadHttpRequestException"/>, 413) and a full
    /// disk while buffering a file (507) go on to <see cref="Http.OpenAiErrorMiddleware"/>.
    /// </summary>
    private static async Task<IFormCollection> ReadFormAsync(HttpRequest request)
    {
        try
        {
            return await request.ReadFormAsync(request.HttpContext.RequestAborted);
        }
        catch (InvalidDataException e)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, $"The multipart body is malformed: {e.Message}", null, "invalid_multipart");
        }
        catch (IOException e) when (e is not BadHttpRequestException && !Http.OpenAiErrorMiddleware.IsStorageFull(e)
            && !request.HttpContext.RequestAborted.IsCancellationRequested)
        {
            throw new ApiException(StatusCodes.Status400BadRequest, $"The multipart body is malformed or ends early: {e.Message}", null, "invalid_multipart");
        }
    }

    private static JsonArray? ArrayField(IFormCollection form, string name, int count)
    {
        if (!form.TryGetValue(name, out var values))
        {
            return null;
        }

        return RequestJson.Parse(values.ToString(), name) is JsonArray array && array.Count == count
            ? array
            : throw ApiException.Invalid(name, $"{name} must be a JSON array with one entry per file ({count})");
    }
}
