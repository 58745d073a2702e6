using System.Text.Json.Nodes;
using SkiaSharp;

namespace Serving.Server.Tests.Apis;

public sealed class EmbeddingsApiTests(InMemoryServerFixture fixture) : IClassFixture<InMemoryServerFixture>
{
    private InMemoryServer Server => fixture.Server;

    [Fact]
    public async Task EmbedsTextsAsUnitVectorsInOpenAiShape()
    {
        var (status, body) = await Server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = new JsonArray("a red car", "a blue sky") });
        Assert.Equal(200, status);
        Assert.Equal("list", body["object"]!.GetValue<string>());
        Assert.Equal("clip-tiny", body["model"]!.GetValue<string>());
        JsonArray data = body["data"]!.AsArray();
        Assert.Equal(2, data.Count);
        float[] first = Floats(data[0]!["embedding"]!);
        Assert.Equal(16, first.Length);
        Assert.Equal(1.0, Math.Sqrt(first.Sum(v => (double)v * v)), 4);
        Assert.Equal(1, data[1]!["index"]!.GetValue<int>());
        Assert.True(body["usage"]!["prompt_tokens"]!.GetValue<int>() >= 6);
    }

    [Fact]
    public async Task ServesTheTrainedShapesClipByDefault()
    {
        var (status, body) = await Server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "shapes-clip", ["input"] = new JsonArray("a photo of a red circle") });
        Assert.Equal(200, status);
        float[] embedding = Floats(body["data"]![0]!["embedding"]!);
        Assert.Equal(32, embedding.Length);
        Assert.Equal(1.0, Math.Sqrt(embedding.Sum(v => (double)v * v)), 4);
    }

    [Fact]
    public async Task MixesTextAndImagesAndBase64MatchesFloats()
    {
        JsonNode image = new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = InMemoryServer.ImageUrl(SKColors.Red) } };
        var request = new JsonObject { ["model"] = "clip-tiny", ["input"] = new JsonArray("a photo", image) };
        var (_, floats) = await Server.PostAsync("/v1/embeddings", (JsonObject)request.DeepClone());
        request["encoding_format"] = "base64";
        var (status, encoded) = await Server.PostAsync("/v1/embeddings", request);
        Assert.Equal(200, status);
        for (int i = 0; i < 2; i++)
        {
            byte[] bytes = Convert.FromBase64String(encoded["data"]![i]!["embedding"]!.GetValue<string>());
            Assert.Equal(Floats(floats["data"]![i]!["embedding"]!), System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(bytes).ToArray());
        }

        Assert.NotEqual(Floats(floats["data"]![0]!["embedding"]!), Floats(floats["data"]![1]!["embedding"]!));
    }

    [Theory]
    [InlineData("""{"model":"clip-tiny","input":""}""", 400, "input[0]")]
    [InlineData("""{"model":"clip-tiny","input":["ok", "   "]}""", 400, "input[1]")]
    [InlineData("""{"model":"clip-tiny"}""", 400, "input")]
    [InlineData("""{"model":"nope","input":"x"}""", 404, "model")]
    [InlineData("""{"model":"clip-tiny","input":[[1,2,3]]}""", 400, "input[0]")]
    [InlineData("""{"model":"clip-tiny","input":"x","encoding_format":"int8"}""", 400, "encoding_format")]
    [InlineData("""{"model":"clip-tiny","input":[{"type":"image_url","image_url":{"url":"data:image/png;base64,aGVsbG8="}}]}""", 400, "input[0]")]
    [InlineData("""{"model":"clip-tiny","input":[{"type":"image_url","image_url":{"url":"data:image/png;base64,@@@"}}]}""", 400, "input[0]")]
    [InlineData("""{"model":"clip-tiny","input":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}""", 400, "input[0]")]
    public async Task BadInputIsA4xxInTheOpenAiShape(string json, int status, string param)
    {
        using var content = new StringContent(json, System.Text.Encoding.UTF8, "application/json");
        using HttpResponseMessage response = await Server.Client.PostAsync("/v1/embeddings", content);
        var body = await System.Net.Http.Json.HttpContentJsonExtensions.ReadFromJsonAsync<JsonObject>(response.Content);
        Assert.Equal(param, InMemoryServer.AssertError(((int)response.StatusCode, body!), status));
    }

    [Fact]
    public async Task TooManyInputsAreRefused()
    {
        var input = new JsonArray([.. Enumerable.Range(0, 65).Select(i => (JsonNode)$"text {i}")]);
        var response = await Server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = input });
        Assert.Equal("input", InMemoryServer.AssertError(response, 400));
    }

    [Fact]
    public async Task ATruncatedImageIsRefused()
    {
        byte[] png = InMemoryServer.Png(SKColors.Green, 128, 128);
        string url = "data:image/png;base64," + Convert.ToBase64String(png[..(png.Length / 2)]);
        JsonNode image = new JsonObject { ["type"] = "image_url", ["image_url"] = new JsonObject { ["url"] = url } };
        var response = await Server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = new JsonArray(image) });
        Assert.Equal("input[0]", InMemoryServer.AssertError(response, 400));
        Assert.Contains("truncated", response.Body["error"]!["message"]!.GetValue<string>());
    }

    internal static float[] Floats(JsonNode node) => [.. node.AsArray().Select(v => v!.GetValue<float>())];
}

/// <summary>One server per test class; tests use their own collections and inputs, so order never matters.</summary>
public sealed class InMemoryServerFixture : IDisposable
{
    public InMemoryServer Server { get; } = new(null, ("Serving:Retrieval:MaxImagePixels", "20000"));

    public void Dispose() => Server.Dispose();
}
