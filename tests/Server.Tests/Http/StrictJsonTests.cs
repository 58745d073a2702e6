using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Apis;
using SkiaSharp;

namespace Serving.Server.Tests.Http;

/// <summary>
/// JSON bodies are read strictly on every route: a key twice, a lone surrogate or invalid
/// UTF-8 in a string, or a number sent as a string is a 400 naming the field, never a 500.
/// </summary>
public sealed class StrictJsonTests(ServingServer server) : IClassFixture<ServingServer>
{
    private const string Chat = """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":2}""";

    [Theory]
    [InlineData("v1/embeddings", """{"model":"clip-tiny","input":"a","input":"b"}""", "input")]
    [InlineData("v1/collections", """{"name":"dup","name":"dup2","model":"clip-tiny"}""", "name")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","role":"system","content":"hi"}]}""", "messages[0].role")]
    [InlineData("v1/completions", """{"model":"tiny","prompt":"a","prompt":"b"}""", "prompt")]
    [InlineData("tokenize", """{"model":"tiny","prompt":"a","prompt":"b"}""", "prompt")]
    public async Task ADuplicateKeyIsA400NamingIt(string path, string body, string param)
    {
        using HttpClient client = server.Client();
        Assert.Equal(param, RawHttp.AssertError(await RawHttp.PostAsync(client, path, body), 400));
    }

    [Fact]
    public async Task DuplicateMetadataKeysAreRefusedAndFilteredSearchKeepsWorking()
    {
        using HttpClient client = server.Client();
        await client.PostAsJsonAsync("v1/collections", new JsonObject { ["name"] = "dupmeta", ["model"] = "clip-tiny" });
        string image = InMemoryServer.ImageUrl(SKColors.Red);
        string upload = $$$"""{"items":[{"id":"a","image":"{{{image}}}","metadata":{"k":1,"k":2}}]}""";
        Assert.Equal("items[0].metadata.k", RawHttp.AssertError(await RawHttp.PostAsync(client, "v1/collections/dupmeta/items", upload), 400));
        string search = """{"text":"red","filter":{"k":1,"k":2}}""";
        Assert.Equal("filter.k", RawHttp.AssertError(await RawHttp.PostAsync(client, "v1/collections/dupmeta/search", search), 400));

        var (status, _) = await RawHttp.PostAsync(client, "v1/collections/dupmeta/items", $$$"""{"items":[{"id":"a","image":"{{{image}}}","metadata":{"k":1}}]}""");
        Assert.Equal(200, status);
        var (searched, hits) = await RawHttp.PostAsync(client, "v1/collections/dupmeta/search", """{"text":"red","filter":{"k":1}}""");
        Assert.Equal(200, searched);
        Assert.Equal("a", hits!["hits"]![0]!["id"]!.GetValue<string>());
    }

    [Theory]
    [InlineData("v1/embeddings", """{"model":"clip-tiny","input":"\ud800"}""", "input")]
    [InlineData("v1/embeddings", """{"model":"clip-tiny","input":["ok",{"type":"text","text":"a\udc00b"}]}""", "input[1].text")]
    [InlineData("v1/collections", """{"name":"\ud800","model":"clip-tiny"}""", "name")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"\ud800"}]}""", "messages[0].content")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":[{"type":"text","text":"\udfff"}]}]}""", "messages[0].content[0].text")]
    [InlineData("v1/completions", """{"model":"tiny","prompt":"\ud800"}""", "prompt")]
    [InlineData("tokenize", """{"model":"tiny","prompt":"\ud800"}""", "prompt")]
    [InlineData("v1/collections/surrogates/items", """{"items":[{"id":"\ud800","image":"x"}]}""", "items[0].id")]
    [InlineData("v1/collections/surrogates/search", """{"text":"\ud800"}""", "text")]
    public async Task ALoneSurrogateIsA400NamingTheField(string path, string body, string param)
    {
        using HttpClient client = server.Client();
        await client.PostAsJsonAsync("v1/collections", new JsonObject { ["name"] = "surrogates", ["model"] = "clip-tiny" });
        Assert.Equal(param, RawHttp.AssertError(await RawHttp.PostAsync(client, path, body), 400));
    }

    [Theory]
    [InlineData("v1/embeddings", """{"model":"clip-tiny","input":"#"}""", "input")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"#"}]}""", "messages[0].content")]
    [InlineData("v1/collections", """{"name":"#","model":"clip-tiny"}""", "name")]
    [InlineData("tokenize", """{"model":"tiny","prompt":"#"}""", "prompt")]
    public async Task InvalidUtf8IsA400NamingTheField(string path, string body, string param)
    {
        using HttpClient client = server.Client();
        byte[] bytes = Encoding.UTF8.GetBytes(body);
        bytes[Array.IndexOf(bytes, (byte)'#')] = 0xFF;
        Assert.Equal(param, RawHttp.AssertError(await RawHttp.PostAsync(client, path, bytes), 400));
    }

    [Fact]
    public async Task AnEmptyBodyWithAJsonContentTypeIsLeftToTheRoute()
    {
        using HttpClient client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/collections") { Content = new StringContent("", Encoding.UTF8, "application/json") };
        using HttpResponseMessage response = await client.SendAsync(request);
        Assert.Equal(200, (int)response.StatusCode);
    }

    [Fact]
    public async Task AValidChatStillAnswers()
    {
        using HttpClient client = server.Client();
        Assert.Equal(200, (await RawHttp.PostAsync(client, "v1/chat/completions", Chat)).Status);
    }
}
