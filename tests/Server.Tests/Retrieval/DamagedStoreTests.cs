using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;

namespace Serving.Server.Tests.Retrieval;

/// <summary>A retrieval.db that SQLite cannot open leaves the server up: chat serves, retrieval answers 503 naming the file.</summary>
public sealed class DamagedStoreTests
{
    [Fact]
    public async Task AGarbageStoreLeavesChatServingAndRetrieval503NamingTheFile()
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDirectory);
        string store = Path.Combine(dataDirectory, "retrieval.db");
        File.WriteAllBytes(store, [.. Enumerable.Range(0, 8192).Select(i => (byte)(i * 7919 % 251))]);
        using var server = new InMemoryServer(dataDirectory);

        JsonObject ready = await ReadyAsync(server);
        Assert.Equal("degraded", ready["status"]!.GetValue<string>());
        Assert.Contains(store, ready["retrieval"]!.GetValue<string>());

        var (chatStatus, chat) = await server.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["model"] = "tiny",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello" }),
            ["max_tokens"] = 3,
        });
        Assert.Equal(200, chatStatus);
        Assert.Equal("chat.completion", chat["object"]!.GetValue<string>());

        foreach ((int Status, JsonObject Body) answer in new[]
        {
            await server.SendAsync(HttpMethod.Get, "/v1/collections"),
            await server.SendAsync(HttpMethod.Get, "/v1/collections/any/items/a"),
            await server.PostAsync("/v1/collections", new JsonObject { ["name"] = "new", ["model"] = "clip-tiny" }),
            await server.PostAsync("/v1/collections/any/search", new JsonObject { ["text"] = "a photo" }),
        })
        {
            InMemoryServer.AssertError(answer, 503);
            Assert.Equal("store_unavailable", answer.Body["error"]!["code"]!.GetValue<string>());
            string message = answer.Body["error"]!["message"]!.GetValue<string>();
            Assert.Contains(store, message);
            Assert.Contains("not a database", message);
        }

        // Embeddings need no store.
        var (embedStatus, _) = await server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = "a photo" });
        Assert.Equal(200, embedStatus);
    }

    /// <summary>/health/ready once the decoders are loaded (the in-memory host loads them after start).</summary>
    private static async Task<JsonObject> ReadyAsync(InMemoryServer server)
    {
        for (int attempt = 0; attempt < 300; attempt++)
        {
            using HttpResponseMessage response = await server.Client.GetAsync("/health/ready");
            if (response.IsSuccessStatusCode)
            {
                return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException("the server did not become ready in 30 s");
    }
}
