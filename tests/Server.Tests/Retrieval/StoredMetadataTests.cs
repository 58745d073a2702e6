using System.Text.Json.Nodes;
using Microsoft.Data.Sqlite;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

/// <summary>Stores written by versions that let a metadata key appear twice still load and filter (the last value wins).</summary>
public sealed class StoredMetadataTests
{
    [Fact]
    public async Task ARowWithADuplicateKeyDoesNotBreakFilteredSearchAfterARestart()
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        using var first = new InMemoryServer(dataDirectory);
        await first.PostAsync("/v1/collections", new JsonObject { ["name"] = "old", ["model"] = "clip-tiny" });
        var (status, _) = await first.PostAsync("/v1/collections/old/items", new JsonObject
        {
            ["items"] = new JsonArray(
                new JsonObject { ["id"] = "twice", ["image"] = InMemoryServer.ImageUrl(SKColors.Red), ["metadata"] = new JsonObject { ["k"] = 0 } },
                new JsonObject { ["id"] = "nested", ["image"] = InMemoryServer.ImageUrl(SKColors.Blue), ["metadata"] = new JsonObject { ["k"] = 0 } }),
        });
        Assert.Equal(200, status);
        // Stopped, not disposed: Dispose deletes the data directory.
        first.Client.Dispose();
        first.Factory.Dispose();
        SqliteConnection.ClearAllPools();

        using (var connection = new SqliteConnection($"Data Source={Path.Combine(dataDirectory, "retrieval.db")};Pooling=False"))
        {
            connection.Open();
            using SqliteCommand command = connection.CreateCommand();
            command.CommandText = """
                UPDATE items SET metadata = '{"k":1,"k":2}' WHERE id = 'twice';
                UPDATE items SET metadata = '{"k":3,"o":{"x":1,"x":2}}' WHERE id = 'nested';
                """;
            Assert.Equal(2, command.ExecuteNonQuery());
        }

        using var second = new InMemoryServer(dataDirectory);
        var (found, hits) = await second.PostAsync("/v1/collections/old/search", new JsonObject { ["text"] = "red", ["filter"] = new JsonObject { ["k"] = 2 } });
        Assert.Equal(200, found);
        Assert.Equal(["twice"], hits["hits"]!.AsArray().Select(h => h!["id"]!.GetValue<string>()));
        var (nestedFound, nested) = await second.PostAsync("/v1/collections/old/search", new JsonObject
        {
            ["text"] = "blue", ["filter"] = new JsonObject { ["o"] = new JsonObject { ["x"] = 2 } },
        });
        Assert.Equal(200, nestedFound);
        Assert.Equal(["nested"], nested["hits"]!.AsArray().Select(h => h!["id"]!.GetValue<string>()));
        var (read, item) = await second.SendAsync(HttpMethod.Get, "/v1/collections/old/items/twice");
        Assert.Equal(200, read);
        Assert.Equal("""{"k":2}""", item["metadata"]!.ToJsonString());
    }
}
