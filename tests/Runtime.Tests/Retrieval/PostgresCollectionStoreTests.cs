using Npgsql;
using Serving.Runtime.Retrieval;

namespace Serving.Runtime.Tests.Retrieval;

/// <summary>The shared store on a throwaway PostgreSQL cluster; each test has a database of its own.</summary>
public sealed class PostgresCollectionStoreTests(PostgresCluster cluster) : IClassFixture<PostgresCluster>
{
    [Fact]
    public void ItemsRoundTripAndEveryWriteLogsOneChange()
    {
        using var store = PostgresCollectionStore.Open(cluster.CreateDatabase());
        Assert.True(store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 2, """{"m":1}""", 7)));
        Assert.False(store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 2, null, 7)));
        Assert.True(store.Upsert("c", [new StoredItem("a", """{"k":1}""", [0.5f, -0.25f]), new StoredItem("b", "{}", [1, 0])]));
        Assert.True(store.Upsert("c", [new StoredItem("a", """{"k":2}""", [1, 1])]));
        Assert.True(store.Delete("c", "b"));
        Assert.False(store.Delete("c", "b"));

        Assert.Equal(new CollectionRecord("c", "clip-tiny", 2, """{"m":1}""", 7), store.ListCollections().Single());
        StoredItem a = store.Find("c", "a")!;
        Assert.Equal("""{"k":2}""", a.Metadata);
        Assert.Equal([1f, 1f], a.Vector);
        Assert.Equal(["a"], store.Items("c").Select(item => item.Id));
        Assert.Equal(["a"], store.Items("c", ["a", "b"]).Select(item => item.Id));
        // Refused writes (the second create, the second delete) log nothing.
        Assert.Equal([null, ["a", "b"], ["a"], ["b"]], store.ChangesAfter(0).Select(change => change.Ids));
        Assert.Equal(store.LastSequence(), store.ChangesAfter(0)[^1].Sequence);

        Assert.True(store.DeleteCollection("c"));
        Assert.Null(store.FindCollection("c"));
        Assert.Null(store.ChangesAfter(store.LastSequence() - 1).Single().Ids);
    }

    [Fact]
    public void AFailureInTheMiddleOfABatchWritesNoneOfItAndLogsNothing()
    {
        using var store = PostgresCollectionStore.Open(cluster.CreateDatabase());
        store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 2, null, 1));
        long sequence = store.LastSequence();
        // PostgreSQL refuses the third row (text cannot hold U+0000) after two went in.
        var refused = Assert.Throws<PostgresException>(() => store.Upsert("c",
            [new StoredItem("p", "{}", [1, 0]), new StoredItem("q", "{}", [0, 1]), new StoredItem("r", "{\"a\":\"\0\"}", [1, 1])]));
        Assert.Equal("22021", refused.SqlState);
        Assert.Empty(store.Items("c"));
        Assert.Equal(sequence, store.LastSequence());
        Assert.False(store.Upsert("missing", [new StoredItem("p", "{}", [1, 0])]));
        Assert.Equal(sequence, store.LastSequence());
    }

    /// <summary>
    /// A writer (another replica) has appended its change but not committed yet: the next write
    /// waits for it, so a follower that reads "sequence &gt; last" in between cannot pass over the
    /// earlier sequence and lose it when it commits.
    /// </summary>
    [Fact]
    public async Task AChangeCommitsOnlyAfterEveryEarlierSequence()
    {
        string database = cluster.CreateDatabase();
        using var store = PostgresCollectionStore.Open(database);
        store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 1, null, 1));
        long start = store.LastSequence();

        await using var other = new NpgsqlConnection(database);
        await other.OpenAsync();
        await using NpgsqlTransaction open = await other.BeginTransactionAsync();
        await Run(other, $"SELECT pg_advisory_xact_lock({PostgresCollectionStore.ChangeLogLock}); INSERT INTO changes (collection, ids) VALUES ('c', ARRAY['early'])");
        Task<bool> write = Task.Run(() => store.Upsert("c", [new StoredItem("late", "{}", [1])]));
        await Waiting.Until(async () => write.IsCompleted || await Scalar(database, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted") == 1);
        Assert.False(write.IsCompleted);
        Assert.Empty(store.ChangesAfter(start));

        await open.CommitAsync();
        Assert.True(await write);
        Assert.Equal([["early"], ["late"]], store.ChangesAfter(start).Select(change => change.Ids));
    }

    private static async Task Run(NpgsqlConnection connection, string sql)
    {
        await using var command = new NpgsqlCommand(sql, connection);
        await command.ExecuteNonQueryAsync();
    }

    private static async Task<long> Scalar(string database, string sql)
    {
        await using var connection = new NpgsqlConnection(database);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand(sql, connection);
        return Convert.ToInt64(await command.ExecuteScalarAsync());
    }
}
