using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Serving.Server.Retrieval;

// Request bodies of /v1/embeddings and /v1/collections, snake_case on the wire. Every field is optional here: a value
// of the wrong type is a 400 naming it (from the JSON path), a missing or invalid one a 400 from the handler or the
// service. Unknown fields are ignored, as OpenAI does. A union (embeddings' input, a debias group) stays JsonElement.

/// <summary><c>POST /v1/embeddings</c>.</summary>
public sealed record EmbeddingsRequest
{
    /// <summary>The CLIP model.</summary>
    public string? Model { get; init; }

    /// <summary>
    /// A string, or an array of strings and parts <c>{"type":"text","text":…}</c> or
    /// <c>{"type":"image_url","image_url":{"url":"data:image/…;base64,…"}}</c>.
    /// </summary>
    public JsonElement? Input { get; init; }

    /// <summary><c>float</c> (default) or <c>base64</c> (little-endian float32).</summary>
    public string? EncodingFormat { get; init; }

    public string? User { get; init; }
}

/// <summary><c>POST /v1/collections</c>.</summary>
public sealed record CreateCollectionRequest
{
    /// <summary>1 to 64 characters: a letter or digit, then letters, digits, '_', '.' or '-'.</summary>
    public string? Name { get; init; }

    /// <summary>The CLIP model that embeds the collection; may be left out when one is served.</summary>
    public string? Model { get; init; }

    public DebiasRequest? Debias { get; init; }
}

/// <summary>A collection's debiasing: concepts removed from its vectors, in order.</summary>
public sealed record DebiasRequest
{
    /// <summary><c>wring</c> (default) or <c>projection</c>.</summary>
    public string? Method { get; init; }

    public List<ConceptRequest?>? Concepts { get; init; }
}

public sealed record ConceptRequest
{
    public string? Name { get; init; }

    /// <summary>At least two: each an array of prompts, or a <see cref="GroupRequest"/> object.</summary>
    public List<JsonElement>? Groups { get; init; }
}

/// <summary>A group given as an object: reference <see cref="Images"/> (base64), or <see cref="Prompts"/> with the nearest images of a collection.</summary>
public sealed record GroupRequest
{
    public List<string>? Images { get; init; }

    public List<string>? Prompts { get; init; }

    public int? NearestImages { get; init; }

    public string? ReferenceCollection { get; init; }
}

/// <summary><c>POST /v1/collections/{name}/items</c> as JSON (the route also takes multipart/form-data).</summary>
public sealed record UploadItemsRequest
{
    public List<UploadItem?>? Items { get; init; }
}

public sealed record UploadItem
{
    /// <summary>1 to 256 characters, not '.' or '..', no '/', '\' or control character; a new id when absent.</summary>
    public string? Id { get; init; }

    /// <summary>The image, base64 or a data URL.</summary>
    public string? Image { get; init; }

    public JsonObject? Metadata { get; init; }
}

/// <summary><c>POST /v1/collections/{name}/search</c>: exactly one of text, image or vector.</summary>
public sealed record SearchRequest
{
    public string? Text { get; init; }

    /// <summary>The query image, base64 or a data URL.</summary>
    public string? Image { get; init; }

    public float[]? Vector { get; init; }

    /// <summary>Hits to return (default 10).</summary>
    public int? TopK { get; init; }

    /// <summary>Metadata every hit must match.</summary>
    public JsonObject? Filter { get; init; }

    /// <summary>Search the debiased index (the default when the collection debiases) or the raw one.</summary>
    public bool? Debias { get; init; }
}

/// <summary>
/// Source-generated metadata for these bodies, first in the server's resolver chain (ServingHostExtensions), with the
/// server's settings: snake_case, numbers never read from strings, a key twice refused.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, NumberHandling = JsonNumberHandling.Strict,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(EmbeddingsRequest))]
[JsonSerializable(typeof(CreateCollectionRequest))]
[JsonSerializable(typeof(GroupRequest))]
[JsonSerializable(typeof(List<string>))]
[JsonSerializable(typeof(UploadItemsRequest))]
[JsonSerializable(typeof(SearchRequest))]
public sealed partial class RetrievalJson : JsonSerializerContext;
