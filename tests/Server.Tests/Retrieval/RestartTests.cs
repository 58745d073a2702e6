using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

public sealed class RestartTests
{
    [Fact]
    public async Task AcknowledgedItemsAndDebiasSettingsSurviveARestart()
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        using (var first = new InMemoryServer(dataDirectory))
        {
            var debias = new JsonObject
            {
                ["concepts"] = new JsonArray(new JsonObject { ["groups"] = new JsonArray(new JsonArray("a warm photo"), new JsonArray("a cold photo")) }),
            };
            await first.PostAsync("/v1/collections", new JsonObject { ["name"] = "kept", ["model"] = "clip-tiny", ["debias"] = debias });
            var (status, _) = await first.PostAsync("/v1/collections/kept/items", new JsonObject
            {
                ["items"] = new JsonArray(new JsonObject { ["id"] = "a", ["image"] = InMemoryServer.ImageUrl(SKColors.Orange), ["metadata"] = new JsonObject { ["n"] = 1 } }),
            });
            Assert.Equal(200, status);
            var (_, before) = await first.PostAsync("/v1/collections/kept/search", new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Orange) });
            first.Client.Dispose();
            first.Factory.Dispose();
            Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();

            using var second = new InMemoryServer(dataDirectory);
            var (_, hits) = await second.PostAsync("/v1/collections/kept/search", new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Orange) });
            Assert.Equal("a", hits["hits"]![0]!["id"]!.GetValue<string>());
            Assert.Equal(1, hits["hits"]![0]!["metadata"]!["n"]!.GetValue<int>());
            // The debiased search scores the same: the group directions were stored, not recomputed.
            Assert.Equal(before.ToJsonString(), hits.ToJsonString());
        }
    }
}
