using Npgsql;
using NpgsqlTypes;

namespace Serving.Runtime.Retrieval;

/// <summary>
/// A change to the shared store, in commit order: <see cref="Ids"/> are the items written or
/// deleted (read their rows to know which), or null when the collection itself was created or deleted.
/// </summary>
public sealed record StoreChange(long Sequence, string Collection, string[]? Ids);

/// <summary>The shared store cannot be reached (connection refused, dropped, server shutting down): a 503, worth retrying.</summary>
public sealed class StoreUnavailableException(string message, Exception inner) : Exception(message, inner);

/// <summary>
/// Collections in PostgreSQL, shared by every replica. Vectors are <c>real[]</c> (pgvector is not
/// needed); each replica keeps its own exact index and follows the <c>changes</c> table, whose
/// sequence is the commit order: every write appends its change under one transaction-scoped
/// advisory lock taken just before the append, so a change with a higher sequence never commits
/// before a lower one and a reader of "sequence &gt; last" misses nothing. The same transaction sends
/// a NOTIFY on <see cref="Channel"/> (delivered at commit) to wake the followers.
/// </summary>
public sealed class PostgresCollectionStore : ICollectionStore, IDisposable
{
    /// <summary>The LISTEN/NOTIFY channel; the payload is empty (followers read the change log).</summary>
    public const string Channel = "serving_retrieval";

    /// <summary>
    /// The transaction-scoped advisory lock every writer takes just before it appends to the change
    /// log, held until its commit: sequences commit in the order they are taken.
    /// </summary>
    public const long ChangeLogLock = 0x5345_5256_0001;

    /// <summary>Serialises the schema's creation by replicas starting together.</summary>
    private const long SchemaLock = 0x5345_5256_0002;

    /// <summary>Changes read per catch-up query: bounds the memory of a replica that was down for long.</summary>
    private const int ChangesPerRead = 1000;

    private readonly NpgsqlDataSource _dataSource;

    private PostgresCollectionStore(NpgsqlDataSource dataSource, string location)
    {
        _dataSource = dataSource;
        Location = location;
    }

    public string Location { get; }

    /// <summary>Connects and creates the tables when missing (several replicas may start at once).</summary>
    public static PostgresCollectionStore Open(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        // Keepalives let a follower's idle LISTEN connection notice a dead server in seconds, not at the TCP timeout.
        if (builder.KeepAlive == 0)
        {
            builder.KeepAlive = 5;
        }

        var store = new PostgresCollectionStore(NpgsqlDataSource.Create(builder), Describe(connectionString));
        try
        {
            store.CreateTables();
            return store;
        }
        catch
        {
            store.Dispose();
            throw;
        }
    }

    private void CreateTables() => Write(connection =>
    {
        Execute(connection, $"SELECT pg_advisory_xact_lock({SchemaLock})");
        Execute(connection, """
            CREATE TABLE IF NOT EXISTS collections (
                name text PRIMARY KEY, model text NOT NULL, dimension integer NOT NULL,
                debias text, created_at bigint NOT NULL);
            CREATE TABLE IF NOT EXISTS items (
                collection text NOT NULL REFERENCES collections(name) ON DELETE CASCADE,
                id text NOT NULL, metadata text NOT NULL, vector real[] NOT NULL,
                PRIMARY KEY (collection, id));
            CREATE TABLE IF NOT EXISTS changes (
                sequence bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                collection text NOT NULL, ids text[], written_at timestamptz NOT NULL DEFAULT now());
            """);
        return true;
    });

    /// <summary>host:port/database of a connection string, without its credentials.</summary>
    public static string Describe(string connectionString)
    {
        var builder = new NpgsqlConnectionStringBuilder(connectionString);
        return $"postgres://{builder.Host}:{builder.Port}/{builder.Database ?? builder.Username}";
    }

    public bool TryCreateCollection(CollectionRecord record) => Write(connection =>
        Execute(connection, "INSERT INTO collections VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            record.Name, record.Model, record.Dimension, record.Debias, record.CreatedAt) == 1
        && AppendChange(connection, record.Name, null));

    public IReadOnlyList<CollectionRecord> ListCollections() => Read(connection =>
        Rows(connection, "SELECT name, model, dimension, debias, created_at FROM collections ORDER BY name", ReadCollection));

    /// <summary>The collection as stored now, or null.</summary>
    public CollectionRecord? FindCollection(string name) => Read(connection =>
        Rows(connection, "SELECT name, model, dimension, debias, created_at FROM collections WHERE name = $1", ReadCollection, name).SingleOrDefault());

    public bool DeleteCollection(string name) => Write(connection =>
        Execute(connection, "DELETE FROM collections WHERE name = $1", name) == 1 && AppendChange(connection, name, null));

    public bool Upsert(string collection, IReadOnlyList<StoredItem> items) => Write(connection =>
    {
        // Checked (and locked against a concurrent delete) first: the insert's foreign-key error would abort the transaction.
        if (Rows(connection, "SELECT 1 FROM collections WHERE name = $1 FOR KEY SHARE", _ => true, collection).Count == 0)
        {
            return false;
        }

        using var batch = new NpgsqlBatch(connection);
        foreach (StoredItem item in items)
        {
            var command = new NpgsqlBatchCommand("""
                INSERT INTO items VALUES ($1, $2, $3, $4)
                ON CONFLICT (collection, id) DO UPDATE SET metadata = excluded.metadata, vector = excluded.vector
                """);
            command.Parameters.Add(new NpgsqlParameter { Value = collection });
            command.Parameters.Add(new NpgsqlParameter { Value = item.Id });
            command.Parameters.Add(new NpgsqlParameter { Value = item.Metadata });
            command.Parameters.Add(new NpgsqlParameter { Value = item.Vector, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Real });
            batch.BatchCommands.Add(command);
        }

        batch.ExecuteNonQuery();
        return AppendChange(connection, collection, [.. items.Select(item => item.Id)]);
    });

    public StoredItem? Find(string collection, string id) => Read(connection =>
        Rows(connection, "SELECT id, metadata, vector FROM items WHERE collection = $1 AND id = $2", ReadItem, collection, id).SingleOrDefault());

    public bool Delete(string collection, string id) => Write(connection =>
        Execute(connection, "DELETE FROM items WHERE collection = $1 AND id = $2", collection, id) == 1
        && AppendChange(connection, collection, [id]));

    public IEnumerable<StoredItem> Items(string collection) => Read(connection =>
        Rows(connection, "SELECT id, metadata, vector FROM items WHERE collection = $1", ReadItem, collection));

    /// <summary>The rows of those ids as stored now; an id without a row was deleted.</summary>
    public IReadOnlyList<StoredItem> Items(string collection, string[] ids) => Read(connection =>
        Rows(connection, "SELECT id, metadata, vector FROM items WHERE collection = $1 AND id = ANY($2)", ReadItem, collection, ids));

    /// <summary>The sequence of the last committed change (0: none yet).</summary>
    public long LastSequence() => Read(connection =>
        Rows(connection, "SELECT coalesce(max(sequence), 0) FROM changes", reader => reader.GetInt64(0))[0]);

    /// <summary>Committed changes after <paramref name="sequence"/>, in order, at most 1000 per call.</summary>
    public IReadOnlyList<StoreChange> ChangesAfter(long sequence) => Read(connection =>
        Rows(connection, $"SELECT sequence, collection, ids FROM changes WHERE sequence > $1 ORDER BY sequence LIMIT {ChangesPerRead}",
            reader => new StoreChange(reader.GetInt64(0), reader.GetString(1), reader.IsDBNull(2) ? null : reader.GetFieldValue<string[]>(2)), sequence));

    /// <summary>
    /// A connection of its own that LISTENs on <see cref="Channel"/>: its
    /// <see cref="NpgsqlConnection.WaitAsync(TimeSpan, CancellationToken)"/> returns true at each notification.
    /// </summary>
    public async Task<NpgsqlConnection> ListenAsync(CancellationToken cancellationToken)
    {
        try
        {
            NpgsqlConnection connection = await _dataSource.OpenConnectionAsync(cancellationToken);
            await using var command = new NpgsqlCommand($"LISTEN {Channel}", connection);
            await command.ExecuteNonQueryAsync(cancellationToken);
            return connection;
        }
        catch (NpgsqlException e) when (IsUnreachable(e))
        {
            throw Unavailable(e);
        }
    }

    public void Dispose() => _dataSource.Dispose();

    /// <summary>Appends the change under the change-log lock and notifies at commit; always true.</summary>
    private static bool AppendChange(NpgsqlConnection connection, string collection, string[]? ids)
    {
        Execute(connection, $"SELECT pg_advisory_xact_lock({ChangeLogLock})");
        Execute(connection, "INSERT INTO changes (collection, ids) VALUES ($1, $2)", collection, ids);
        Execute(connection, $"NOTIFY {Channel}");
        return true;
    }

    /// <summary>Runs <paramref name="write"/> in one transaction, committed when it returns true and rolled back otherwise.</summary>
    private bool Write(Func<NpgsqlConnection, bool> write) => Read(connection =>
    {
        using NpgsqlTransaction transaction = connection.BeginTransaction();
        if (!write(connection))
        {
            transaction.Rollback();
            return false;
        }

        transaction.Commit();
        return true;
    });

    private T Read<T>(Func<NpgsqlConnection, T> read)
    {
        try
        {
            using NpgsqlConnection connection = _dataSource.OpenConnection();
            return read(connection);
        }
        catch (NpgsqlException e) when (IsUnreachable(e))
        {
            throw Unavailable(e);
        }
    }

    /// <summary>
    /// No server, a dropped connection, or a server that refuses this client for now: connection
    /// exceptions (08), authorisation (28: e.g. a role that may no longer log in), insufficient
    /// resources (53: too many connections), operator intervention (57: shutting down, starting up).
    /// </summary>
    private static bool IsUnreachable(NpgsqlException e) =>
        e is not PostgresException postgres || e.IsTransient || postgres.SqlState[..2] is "08" or "28" or "53" or "57";

    private StoreUnavailableException Unavailable(NpgsqlException e) =>
        new($"The PostgreSQL store {Location} cannot be reached: {e.Message}", e);

    /// <summary>Rows affected.</summary>
    private static int Execute(NpgsqlConnection connection, string sql, params object?[] parameters)
    {
        using NpgsqlCommand command = Command(connection, sql, parameters);
        return command.ExecuteNonQuery();
    }

    private static List<T> Rows<T>(NpgsqlConnection connection, string sql, Func<NpgsqlDataReader, T> row, params object?[] parameters)
    {
        using NpgsqlCommand command = Command(connection, sql, parameters);
        using NpgsqlDataReader reader = command.ExecuteReader();
        var rows = new List<T>();
        while (reader.Read())
        {
            rows.Add(row(reader));
        }

        return rows;
    }

    private static NpgsqlCommand Command(NpgsqlConnection connection, string sql, object?[] parameters)
    {
        var command = new NpgsqlCommand(sql, connection);
        foreach (object? value in parameters)
        {
            command.Parameters.Add(value is string[] ? new NpgsqlParameter { Value = value, NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text }
                : new NpgsqlParameter { Value = value ?? DBNull.Value });
        }

        return command;
    }

    private static CollectionRecord ReadCollection(NpgsqlDataReader reader) =>
        new(reader.GetString(0), reader.GetString(1), reader.GetInt32(2), reader.IsDBNull(3) ? null : reader.GetString(3), reader.GetInt64(4));

    private static StoredItem ReadItem(NpgsqlDataReader reader) => new(reader.GetString(0), reader.GetString(1), reader.GetFieldValue<float[]>(2));
}
