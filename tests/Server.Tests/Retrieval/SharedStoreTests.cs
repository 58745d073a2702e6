using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Serving.Runtime.Retrieval;
using Serving.Runtime.Tests;
using Serving.Runtime.Tests.Retrieval;
using Serving.Server.Retrieval;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

/// <summary>
/// Two servers (replicas) on one PostgreSQL database: each keeps its own index and follows the
/// other's writes through LISTEN/NOTIFY and the change log. Each test has a database of its own.
/// </summary>
public sealed class SharedStoreTests(PostgresCluster cluster) : IClassFixture<PostgresCluster>
{
    /// <summary>A replica that polls the change log only hourly: within a test's wait only NOTIFY (or a reconnect) can wake it.</summary>
    private static InMemoryServer Replica(string connectionString) =>
        new(null, ("Serving:Retrieval:Store", "postgres"), ("Serving:Retrieval:ConnectionString", connectionString), ("Serving:Retrieval:FollowPollSeconds", "3600"));

    [Fact]
    public async Task TwoReplicasSeeEachOthersWrites()
    {
        string database = cluster.CreateDatabase();
        using InMemoryServer a = Replica(database), b = Replica(database);
        Assert.Equal(201, (await a.PostAsync("/v1/collections", new JsonObject { ["name"] = "shared", ["model"] = "clip-tiny" })).Status);
        await Waiting.Until(async () => (await b.SendAsync(HttpMethod.Get, "/v1/collections/shared")).Status == 200);

        Assert.Equal(200, (await a.PostAsync("/v1/collections/shared/items", Batch("a", 3))).Status);
        await Waiting.Until(async () => Ids(await Search(b, "shared")).SetEquals(["a0", "a1", "a2"]));

        Assert.Equal(200, (await b.PostAsync("/v1/collections/shared/items", Batch("b", 2))).Status);
        Assert.Equal(200, (await b.SendAsync(HttpMethod.Delete, "/v1/collections/shared/items/a1")).Status);
        // The writer answers after its own index has the write (read your writes), the other replica soon after.
        Assert.True(Ids(await Search(b, "shared")).SetEquals(["a0", "a2", "b0", "b1"]));
        await Waiting.Until(async () => Ids(await Search(a, "shared")).SetEquals(["a0", "a2", "b0", "b1"]));
        var (_, item) = await a.SendAsync(HttpMethod.Get, "/v1/collections/shared/items/b1");
        Assert.Equal(1, item["metadata"]!["k"]!.GetValue<int>());

        Assert.Equal(200, (await b.SendAsync(HttpMethod.Delete, "/v1/collections/shared")).Status);
        await Waiting.Until(async () => (await a.SendAsync(HttpMethod.Get, "/v1/collections/shared")).Status == 404);
    }

    [Fact]
    public async Task AReplicaCutOffFromTheStoreCatchesUpFromTheChangeLog()
    {
        string database = cluster.CreateDatabase();
        using InMemoryServer a = Replica(database);
        await a.PostAsync("/v1/collections", new JsonObject { ["name"] = "kept", ["model"] = "clip-tiny" });
        await a.PostAsync("/v1/collections/kept/items", Batch("early", 2));
        string db = new Npgsql.NpgsqlConnectionStringBuilder(database).Database!;
        cluster.Execute("CREATE ROLE replica_b LOGIN", db);
        cluster.Execute("GRANT ALL ON SCHEMA public TO replica_b; GRANT ALL ON ALL TABLES IN SCHEMA public TO replica_b", db);
        using InMemoryServer b = Replica(cluster.ConnectionString(db, "replica_b", "replica-b"));
        StoreFollower follower = b.Factory.Services.GetRequiredService<RetrievalService>().Follower!;
        Assert.Equal(2, Ids(await Search(b, "kept")).Count);

        // B loses its connections and cannot log in again while A writes: nothing can reach it.
        cluster.Execute("ALTER ROLE replica_b NOLOGIN; SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = 'replica_b'", db);
        long before = follower.Applied;
        await a.PostAsync("/v1/collections/kept/items", Batch("late", 3));
        Assert.Equal(200, (await a.SendAsync(HttpMethod.Delete, "/v1/collections/kept/items/early0")).Status);
        await a.PostAsync("/v1/collections", new JsonObject { ["name"] = "added", ["model"] = "clip-tiny" });
        await a.PostAsync("/v1/collections/added/items", Batch("x", 1));
        Assert.Equal(before, follower.Applied);
        Assert.True(Ids(await Search(b, "kept")).SetEquals(["early0", "early1"]));
        // Reads that need the store say so in the OpenAI shape.
        InMemoryServer.AssertError(await b.SendAsync(HttpMethod.Get, "/v1/collections/kept/items/late0"), 503);

        cluster.Execute("ALTER ROLE replica_b LOGIN", db);
        await Waiting.Until(async () => Ids(await Search(b, "kept")).SetEquals(["early1", "late0", "late1", "late2"]));
        await Waiting.Until(async () => (await b.SendAsync(HttpMethod.Get, "/v1/collections/added")).Status == 200);
        Assert.Equal(["x0"], Ids(await Search(b, "added")));
    }

    [Fact]
    public async Task AReplicaThatStartsBeforeItsDatabaseOpensItLater()
    {
        string name = "late" + Guid.NewGuid().ToString("N");
        using InMemoryServer replica = Replica(cluster.ConnectionString(name));
        // Chat serves; retrieval says why it is off, in the OpenAI shape.
        Assert.Equal(503, (await replica.SendAsync(HttpMethod.Get, "/v1/collections")).Status);
        // Readiness says "loading" while the decoders load, then "degraded" (chat ready, retrieval off).
        await Waiting.Until(async () => (await replica.SendAsync(HttpMethod.Get, "/health/ready")).Body["status"]!.GetValue<string>() != "loading");
        Assert.Equal("degraded", (await replica.SendAsync(HttpMethod.Get, "/health/ready")).Body["status"]!.GetValue<string>());

        cluster.Execute($"CREATE DATABASE {name}");
        await Waiting.Until(async () => (await replica.SendAsync(HttpMethod.Get, "/v1/collections")).Status == 200);
        Assert.Equal(201, (await replica.PostAsync("/v1/collections", new JsonObject { ["name"] = "c", ["model"] = "clip-tiny" })).Status);
        Assert.Equal(200, (await replica.PostAsync("/v1/collections/c/items", Batch("a", 1))).Status);
        Assert.Equal(["a0"], Ids(await Search(replica, "c")));
    }

    [Fact]
    public async Task ABadBatchWritesNothingAndLogsNoChange()
    {
        string database = cluster.CreateDatabase();
        using InMemoryServer a = Replica(database);
        await a.PostAsync("/v1/collections", new JsonObject { ["name"] = "atomic", ["model"] = "clip-tiny" });
        using var store = PostgresCollectionStore.Open(database);
        long sequence = store.LastSequence();

        // An undecodable image in the middle of a batch is a 400 in the OpenAI shape and writes nothing.
        JsonObject batch = Batch("ok", 3);
        batch["items"]![1]!["image"] = "data:image/png;base64,AAAA";
        Assert.Equal("items[1].image", InMemoryServer.AssertError(await a.PostAsync("/v1/collections/atomic/items", batch), 400));
        Assert.Empty(store.Items("atomic"));
        Assert.Equal(sequence, store.LastSequence());

        // A batch for a collection another replica deleted meanwhile is a 404, not half a batch.
        Assert.True(store.DeleteCollection("atomic"));
        InMemoryServer.AssertError(await a.PostAsync("/v1/collections/atomic/items", Batch("late", 2)), 404);
        Assert.Empty(store.Items("atomic"));
    }

    private static JsonObject Batch(string prefix, int count) => new()
    {
        ["items"] = new JsonArray([.. Enumerable.Range(0, count).Select(k => (JsonNode)new JsonObject
        {
            ["id"] = $"{prefix}{k}",
            ["image"] = InMemoryServer.ImageUrl(new SKColor((byte)(40 * k), (byte)(prefix.Length * 30), 90)),
            ["metadata"] = new JsonObject { ["k"] = k },
        })]),
    };

    private static async Task<JsonObject> Search(InMemoryServer server, string collection)
    {
        var (status, body) = await server.PostAsync($"/v1/collections/{collection}/search", new JsonObject { ["text"] = "a photo", ["top_k"] = 100 });
        Assert.Equal(200, status);
        return body;
    }

    private static HashSet<string> Ids(JsonObject hits) => [.. hits["hits"]!.AsArray().Select(hit => hit!["id"]!.GetValue<string>())];
}
