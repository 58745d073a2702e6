using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Http;

/// <summary>Request targets Kestrel rewrites before routing (dot segments): never a deletion, always the OpenAI shape.</summary>
public sealed class RequestTargetTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Theory]
    [InlineData("DELETE", "..")]
    [InlineData("DELETE", "%2E%2E")]
    [InlineData("DELETE", "%2e.")]
    [InlineData("DELETE", ".")]
    [InlineData("DELETE", "%2E")]
    [InlineData("GET", "..")]
    [InlineData("DELETE", "a/../..")]
    public async Task ADotSegmentForAnItemIdNeverReachesTheCollection(string method, string segment)
    {
        using HttpClient client = server.Client();
        string name = "dots-" + Guid.NewGuid().ToString("N")[..8];
        Assert.Equal(201, (int)(await client.PostAsJsonAsync("v1/collections", new JsonObject { ["name"] = name, ["model"] = "clip-tiny" })).StatusCode);
        var items = new JsonObject { ["items"] = new JsonArray(new JsonObject { ["id"] = "kept", ["image"] = InMemoryServer.ImageUrl(SKColors.Red) }) };
        Assert.Equal(200, (int)(await client.PostAsJsonAsync($"v1/collections/{name}/items", items)).StatusCode);

        var answer = await RawHttp.SendAsync(server.BaseAddress, method, $"/v1/collections/{name}/items/{segment}");

        RawHttp.AssertError(answer, 400);
        Assert.Contains("dot segment", answer.Body!["error"]!["message"]!.GetValue<string>());
        JsonObject collection = (await client.GetFromJsonAsync<JsonObject>($"v1/collections/{name}"))!;
        Assert.Equal(1, collection["count"]!.GetValue<int>());
        Assert.Equal(200, (int)(await client.GetAsync($"v1/collections/{name}/items/kept")).StatusCode);
    }
}
