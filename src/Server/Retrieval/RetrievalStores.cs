using Serving.Runtime.Retrieval;
using Serving.Server.Hosting;

namespace Serving.Server.Retrieval;

/// <summary>The values of <c>Serving:Retrieval:Store</c> and the store each one opens.</summary>
public static class RetrievalStores
{
    public const string Sqlite = "sqlite", Postgres = "postgres";

    /// <summary>Opens the configured store (validated at start by <see cref="RetrievalOptionsValidator"/>).</summary>
    public static ICollectionStore Open(RetrievalOptions options, string dataDirectory) => options.Store switch
    {
        Postgres => PostgresCollectionStore.Open(options.ConnectionString!),
        _ => SqliteCollectionStore.Open(SqlitePath(dataDirectory), options.MaxStoreBytes),
    };

    /// <summary>Where the configured store is, for logs and errors (no password).</summary>
    public static string Location(RetrievalOptions options, string dataDirectory) =>
        options.Store == Postgres ? PostgresCollectionStore.Describe(options.ConnectionString!) : SqlitePath(dataDirectory);

    /// <summary>The full path of retrieval.db in the data directory.</summary>
    public static string SqlitePath(string dataDirectory) => Path.GetFullPath(Path.Combine(dataDirectory, "retrieval.db"));
}
