using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

public sealed class RestartTests
{
    [Fact]
    public async Task AcknowledgedItemsSurviveARestart()
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        using (var first = new ServingServer(dataDirectory))
        {
            await first.PostAsync("/v1/collections", new JsonObject { ["name"] = "kept", ["model"] = "clip-tiny" });
            var (status, _) = await first.PostAsync("/v1/collections/kept/items", new JsonObject
            {
                ["items"] = new JsonArray(new JsonObject { ["id"] = "a", ["image"] = ServingServer.ImageUrl(SKColors.Orange), ["metadata"] = new JsonObject { ["n"] = 1 } }),
            });
            Assert.Equal(200, status);
            first.Client.Dispose();
            first.Factory.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

            using var second = new ServingServer(dataDirectory);
            var (_, hits) = await second.PostAsync("/v1/collections/kept/search", new JsonObject { ["image"] = ServingServer.ImageUrl(SKColors.Orange) });
            Assert.Equal("a", hits["hits"]![0]!["id"]!.GetValue<string>());
            Assert.Equal(1, hits["hits"]![0]!["metadata"]!["n"]!.GetValue<int>());
        }
    }
}
