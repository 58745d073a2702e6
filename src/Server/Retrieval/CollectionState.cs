using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using Serving.Runtime.Debiasing;
using Serving.Runtime.Retrieval;

namespace Serving.Server.Retrieval;

/// <summary>
/// A collection in memory: its stored record, the index of raw vectors, the index of
/// debiased ones when the collection debiases, and every item's metadata for filters.
/// Writers take <see cref="WriteLock"/> so the store and the indexes change in the same order.
/// </summary>
public sealed class CollectionState(CollectionRecord record, DebiasTransform? transform)
{
    public CollectionRecord Record { get; } = record;

    public DebiasTransform? Transform { get; } = transform;

    public VectorIndex Raw { get; } = new(record.Dimension);

    public VectorIndex? Debiased { get; } = transform is null ? null : new VectorIndex(record.Dimension);

    public ConcurrentDictionary<string, JsonObject> Metadata { get; } = new(StringComparer.Ordinal);

    public SemaphoreSlim WriteLock { get; } = new(1, 1);

    /// <summary>Adds or replaces an item in memory (after the store has it).</summary>
    public void Index(string id, float[] vector, JsonObject metadata)
    {
        Raw.Upsert(id, vector);
        if (Transform is not null)
        {
            Debiased!.Upsert(id, DebiasedUnit(vector));
        }

        Metadata[id] = metadata;
    }

    /// <summary>
    /// The transformed vector at unit length: search ranks by cosine. WRING keeps norms, so this
    /// only matters for projection, which shrinks each vector by its share in the concept.
    /// </summary>
    public float[] DebiasedUnit(float[] vector)
    {
        float[] moved = Transform!.Apply(vector);
        float norm = System.Numerics.Tensors.TensorPrimitives.Norm<float>(moved);
        if (norm > 0)
        {
            System.Numerics.Tensors.TensorPrimitives.Divide(moved, norm, moved);
        }

        return moved;
    }

    public void Unindex(string id)
    {
        Raw.Remove(id);
        Debiased?.Remove(id);
        Metadata.TryRemove(id, out _);
    }

    /// <summary>Brings <paramref name="ids"/> in line with the store: those in <paramref name="rows"/> are indexed, the others removed.</summary>
    public void Refresh(string[] ids, IReadOnlyList<StoredItem> rows, Func<StoredItem, JsonObject> metadata)
    {
        var stored = rows.ToDictionary(row => row.Id, StringComparer.Ordinal);
        foreach (string id in ids)
        {
            if (stored.TryGetValue(id, out StoredItem? item))
            {
                Index(id, item.Vector, metadata(item));
            }
            else
            {
                Unindex(id);
            }
        }
    }

    /// <summary>True when every key of <paramref name="filter"/> is in the item's metadata with an equal JSON value.</summary>
    public bool Matches(string id, JsonObject filter)
    {
        if (!Metadata.TryGetValue(id, out JsonObject? metadata))
        {
            return false;
        }

        foreach (var (key, value) in filter)
        {
            if (!metadata.TryGetPropertyValue(key, out JsonNode? actual) || !JsonNode.DeepEquals(actual, value))
            {
                return false;
            }
        }

        return true;
    }

    public CollectionInfo Info() => new("collection", Record.Name, Record.Model, Record.Dimension,
        Record.Debias is null ? null : DebiasSettings.Public(JsonNode.Parse(Record.Debias)!.AsObject()), Raw.Count, Record.CreatedAt);
}
