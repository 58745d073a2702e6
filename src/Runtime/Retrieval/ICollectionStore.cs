namespace Serving.Runtime.Retrieval;

/// <summary>A collection as stored: its model, the vector length, and its debias settings (JSON, or null).</summary>
public sealed record CollectionRecord(string Name, string Model, int Dimension, string? Debias, long CreatedAt);

/// <summary>An item as stored: metadata as a JSON object text, the raw (not debiased) unit vector.</summary>
public sealed record StoredItem(string Id, string Metadata, float[] Vector);

/// <summary>
/// The durable side of retrieval: <see cref="SqliteCollectionStore"/> (one file, one server) or
/// <see cref="PostgresCollectionStore"/> (one database shared by replicas). Contract: every write is
/// one transaction, durable when the call returns (a 2xx may follow it), and leaves nothing of
/// itself when it throws; a batch is never partly visible to any reader.
/// </summary>
public interface ICollectionStore
{
    /// <summary>Where the store is, for logs and errors (a file path, or host:port/database without the password).</summary>
    string Location { get; }

    /// <summary>False when a collection of that name exists already.</summary>
    bool TryCreateCollection(CollectionRecord record);

    IReadOnlyList<CollectionRecord> ListCollections();

    /// <summary>Deletes the collection and its items in one transaction; false when absent.</summary>
    bool DeleteCollection(string name);

    /// <summary>Inserts or replaces every item, all or nothing; false (nothing written) when the collection does not exist.</summary>
    bool Upsert(string collection, IReadOnlyList<StoredItem> items);

    StoredItem? Find(string collection, string id);

    bool Delete(string collection, string id);

    /// <summary>Every item of a collection, streamed (what the in-memory index is rebuilt from at start).</summary>
    IEnumerable<StoredItem> Items(string collection);
}
