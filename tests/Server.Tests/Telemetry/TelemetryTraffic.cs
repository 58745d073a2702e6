using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Telemetry;

/// <summary>
/// One of every kind of request the dashboards chart: completions (whole and streamed), chat,
/// a refused request (400), text and image embeddings, and a collection upload and search.
/// Texts differ by <c>round</c>, so the embedder's text cache does not skip the second round.
/// </summary>
public static class TelemetryTraffic
{
    public static async Task DriveAsync(HttpClient client, string collection, int round)
    {
        await Expect(client, "v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "In the beginning", ["max_tokens"] = 12 }, 200);
        await Expect(client, "v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "And God said", ["max_tokens"] = 12, ["stream"] = true, ["n"] = 2 }, 200);
        await Expect(client, "v1/chat/completions", new JsonObject
        {
            ["model"] = "tiny", ["max_tokens"] = 8, ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello" }),
        }, 200);
        await Expect(client, "v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["temperature"] = 9 }, 400);
        await Expect(client, "v1/embeddings", new JsonObject
        {
            ["model"] = "clip-tiny",
            ["input"] = new JsonArray($"a red car, round {round}", new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = InMemoryServer.ImageUrl(SKColors.Red) } }),
        }, 200);

        using HttpResponseMessage exists = await client.GetAsync($"v1/collections/{collection}");
        if (!exists.IsSuccessStatusCode)
        {
            await Expect(client, "v1/collections", new JsonObject { ["name"] = collection, ["model"] = "clip-tiny" }, 201);
        }

        await Expect(client, $"v1/collections/{collection}/items", new JsonObject
        {
            ["items"] = new JsonArray(new JsonObject { ["image"] = InMemoryServer.ImageUrl(SKColors.Blue) }),
        }, 200);
        await Expect(client, $"v1/collections/{collection}/search", new JsonObject { ["text"] = $"a blue square, round {round}", ["top_k"] = 1 }, 200);
    }

    private static async Task Expect(HttpClient client, string path, JsonObject body, int status)
    {
        using HttpResponseMessage response = await client.PostAsJsonAsync(path, body);
        string text = await response.Content.ReadAsStringAsync();
        Assert.True((int)response.StatusCode == status, $"POST {path}: {(int)response.StatusCode} {text}");
    }
}
