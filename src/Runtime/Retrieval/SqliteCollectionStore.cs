using System.Runtime.InteropServices;
using Microsoft.Data.Sqlite;

namespace Serving.Runtime.Retrieval;

/// <summary>
/// The durable side of retrieval: one SQLite file in WAL mode with <c>synchronous=FULL</c>, so
/// a commit is on disk before it returns and an acknowledged item survives a crash or power
/// loss. Every batch is one transaction: a crash in the middle leaves none of it. A new
/// connection per call (pooled by Microsoft.Data.Sqlite); SQLite serialises the writers.
/// </summary>
public sealed class SqliteCollectionStore : ICollectionStore
{
    /// <summary>SQLite's default page size, which the store keeps.</summary>
    private const long PageBytes = 4096;

    private readonly string _connectionString;

    /// <summary>The PRAGMAs every connection runs when opened.</summary>
    private readonly string _pragmas;

    /// <summary>SQLITE_CONSTRAINT_FOREIGNKEY: an item of a collection that does not exist.</summary>
    private const int ForeignKeyViolation = 787;

    private SqliteCollectionStore(string path, string connectionString, long maxBytes)
    {
        Location = path;
        _connectionString = connectionString;
        // FULL: the WAL is fsynced at every commit, so a 2xx means the item is on disk.
        // max_page_count is per connection: past it a write fails with SQLITE_FULL, as on a full disk.
        _pragmas = "PRAGMA synchronous=FULL;" + (maxBytes > 0 ? $"PRAGMA max_page_count={Math.Max(1, maxBytes / PageBytes)};" : "");
    }

    /// <summary>Opens (or creates) the store; <paramref name="maxBytes"/> &gt; 0 caps the file's size (writes past it throw SQLITE_FULL).</summary>
    public static SqliteCollectionStore Open(string path, long maxBytes = 0)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        var builder = new SqliteConnectionStringBuilder { DataSource = path, ForeignKeys = true, Pooling = true };
        var store = new SqliteCollectionStore(Path.GetFullPath(path), builder.ToString(), maxBytes);
        using SqliteConnection connection = store.Connect();
        Execute(connection, "PRAGMA journal_mode=WAL;");
        Execute(connection, """
            CREATE TABLE IF NOT EXISTS collections (
                name TEXT PRIMARY KEY, model TEXT NOT NULL, dimension INTEGER NOT NULL,
                debias TEXT, created_at INTEGER NOT NULL);
            CREATE TABLE IF NOT EXISTS items (
                collection TEXT NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
                id TEXT NOT NULL, metadata TEXT NOT NULL, vector BLOB NOT NULL,
                PRIMARY KEY (collection, id));
            """);
        return store;
    }

    public string Location { get; }

    public bool TryCreateCollection(CollectionRecord record)
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "INSERT OR IGNORE INTO collections VALUES ($name, $model, $dimension, $debias, $created)",
            ("$name", record.Name), ("$model", record.Model), ("$dimension", record.Dimension), ("$debias", record.Debias), ("$created", record.CreatedAt));
        return command.ExecuteNonQuery() == 1;
    }

    public IReadOnlyList<CollectionRecord> ListCollections()
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "SELECT name, model, dimension, debias, created_at FROM collections ORDER BY name");
        using SqliteDataReader reader = command.ExecuteReader();
        var records = new List<CollectionRecord>();
        while (reader.Read())
        {
            records.Add(new CollectionRecord(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetInt64(4)));
        }

        return records;
    }

    public bool DeleteCollection(string name)
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "DELETE FROM collections WHERE name = $name", ("$name", name));
        return command.ExecuteNonQuery() == 1;
    }

    public bool Upsert(string collection, IReadOnlyList<StoredItem> items)
    {
        using SqliteConnection connection = Connect();
        using SqliteTransaction transaction = connection.BeginTransaction();
        using SqliteCommand command = Command(connection, "INSERT OR REPLACE INTO items VALUES ($collection, $id, $metadata, $vector)");
        command.Transaction = transaction;
        SqliteParameter id = command.Parameters.Add("$id", SqliteType.Text), metadata = command.Parameters.Add("$metadata", SqliteType.Text),
            vector = command.Parameters.Add("$vector", SqliteType.Blob);
        command.Parameters.AddWithValue("$collection", collection);
        try
        {
            foreach (StoredItem item in items)
            {
                id.Value = item.Id;
                metadata.Value = item.Metadata;
                vector.Value = MemoryMarshal.AsBytes(item.Vector.AsSpan()).ToArray();
                command.ExecuteNonQuery();
            }
        }
        catch (SqliteException e) when (e.SqliteExtendedErrorCode == ForeignKeyViolation)
        {
            return false;
        }

        transaction.Commit();
        return true;
    }

    public StoredItem? Find(string collection, string id)
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "SELECT id, metadata, vector FROM items WHERE collection = $collection AND id = $id",
            ("$collection", collection), ("$id", id));
        using SqliteDataReader reader = command.ExecuteReader();
        return reader.Read() ? ReadItem(reader) : null;
    }

    public bool Delete(string collection, string id)
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "DELETE FROM items WHERE collection = $collection AND id = $id", ("$collection", collection), ("$id", id));
        return command.ExecuteNonQuery() == 1;
    }

    public IEnumerable<StoredItem> Items(string collection)
    {
        using SqliteConnection connection = Connect();
        using SqliteCommand command = Command(connection, "SELECT id, metadata, vector FROM items WHERE collection = $collection", ("$collection", collection));
        using SqliteDataReader reader = command.ExecuteReader();
        while (reader.Read())
        {
            yield return ReadItem(reader);
        }
    }

    private static StoredItem ReadItem(SqliteDataReader reader)
    {
        byte[] bytes = (byte[])reader.GetValue(2);
        return new StoredItem(reader.GetString(0), reader.GetString(1), MemoryMarshal.Cast<byte, float>(bytes).ToArray());
    }

    private SqliteConnection Connect()
    {
        var connection = new SqliteConnection(_connectionString);
        connection.Open();
        Execute(connection, _pragmas);
        return connection;
    }

    private static void Execute(SqliteConnection connection, string sql)
    {
        using SqliteCommand command = Command(connection, sql);
        command.ExecuteNonQuery();
    }

    private static SqliteCommand Command(SqliteConnection connection, string sql, params (string Name, object? Value)[] parameters)
    {
        SqliteCommand command = connection.CreateCommand();
        command.CommandText = sql;
        foreach (var (name, value) in parameters)
        {
            command.Parameters.AddWithValue(name, value ?? DBNull.Value);
        }

        return command;
    }
}
