using System.Text.Json.Nodes;
using System.Text.Json.Serialization;

namespace Serving.Server.Retrieval;

// Response bodies of /v1/embeddings and /v1/collections, snake_case on the wire, so openapi.yaml describes them.

/// <summary><c>POST /v1/embeddings</c>: one entry per input, in request order.</summary>
public sealed record EmbeddingList(string Object, IReadOnlyList<EmbeddingData> Data, string Model, EmbeddingUsage Usage);

/// <summary><see cref="Embedding"/> is an array of floats, or with <c>encoding_format</c> base64 a string of little-endian float32.</summary>
public sealed record EmbeddingData(string Object, int Index, object Embedding);

public sealed record EmbeddingUsage(int PromptTokens, int TotalTokens);

/// <summary>A collection; <see cref="Debias"/> is its settings without the computed directions.</summary>
public sealed record CollectionInfo(string Object, string Name, string Model, int Dimension, JsonObject? Debias, int Count, long CreatedAt);

public sealed record CollectionList(string Object, IReadOnlyList<CollectionInfo> Data);

public sealed record CollectionDeleted(string Object, string Name, bool Deleted);

/// <summary>The ids of uploaded items, in upload order (new ones made for items sent without).</summary>
public sealed record ItemIds(string Object, IReadOnlyList<string> Ids);

/// <summary>An item; <see cref="Embedding"/> only with <c>?include_vector=true</c>.</summary>
public sealed record CollectionItem(string Object, string Id, JsonObject Metadata,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] float[]? Embedding);

public sealed record ItemDeleted(string Object, string Id, bool Deleted);

public sealed record SearchHits(string Object, IReadOnlyList<SearchHit> Hits);

public sealed record SearchHit(string Id, float Score, JsonObject Metadata);
