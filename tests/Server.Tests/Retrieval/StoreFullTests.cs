using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Retrieval;

/// <summary>A store that cannot grow (its size limit here; a full disk gives SQLite the same SQLITE_FULL) answers 507 and loses nothing.</summary>
public sealed class StoreFullTests
{
    [Fact]
    public async Task AnUploadIntoAFullStoreIs507AndKeepsWhatWasStored()
    {
        using var server = new InMemoryServer(null, ("Serving:Retrieval:MaxStoreBytes", "131072"));
        await server.PostAsync("/v1/collections", new JsonObject { ["name"] = "full", ["model"] = "clip-tiny" });
        string filler = new('m', 8000);
        var stored = new List<string>();
        (int Status, JsonObject Body) answer = (0, []);
        for (int i = 0; i < 40; i++)
        {
            answer = await server.PostAsync("/v1/collections/full/items", new JsonObject
            {
                ["items"] = new JsonArray(new JsonObject { ["id"] = $"i{i}", ["image"] = InMemoryServer.ImageUrl(SKColors.Red), ["metadata"] = new JsonObject { ["f"] = filler } }),
            });
            if (answer.Status != 200)
            {
                break;
            }

            stored.Add($"i{i}");
        }

        InMemoryServer.AssertError(answer, 507);
        Assert.Equal("insufficient_storage", answer.Body["error"]!["code"]!.GetValue<string>());
        Assert.NotEmpty(stored);
        var (_, collection) = await server.SendAsync(HttpMethod.Get, "/v1/collections/full");
        Assert.Equal(stored.Count, collection["count"]!.GetValue<int>());
        foreach (string id in stored)
        {
            Assert.Equal(200, (await server.SendAsync(HttpMethod.Get, $"/v1/collections/full/items/{id}")).Status);
        }
    }
}
