using System.Net;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Tests.Http;

/// <summary>
/// A web page on another origin may POST a text/plain or form body to a server on localhost or an
/// intranet without a preflight, so every JSON route refuses those (415): no cross-site request forgery.
/// </summary>
public sealed class JsonContentTypeTests(ServingServer server) : IClassFixture<ServingServer>
{
    public static readonly TheoryData<string, string> JsonRoutes = new()
    {
        { "v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":1}""" },
        { "v1/completions", """{"model":"tiny","prompt":"In","max_tokens":1}""" },
        { "tokenize", """{"model":"tiny","prompt":"In"}""" },
        { "detokenize", """{"model":"tiny","tokens":[1]}""" },
        { "v1/embeddings", """{"model":"clip-tiny","input":"a red square"}""" },
        { "v1/collections", """{"name":"csrf","model":"clip-tiny"}""" },
        { "v1/collections/browser/search", """{"text":"red"}""" },
        { "v1/collections/browser/items", """{"items":[]}""" },
    };

    [Theory]
    [MemberData(nameof(JsonRoutes))]
    public async Task ABodyAPageCanSendWithoutAPreflightIsA415(string path, string body)
    {
        using HttpClient client = server.Client();
        await client.PostAsJsonAsync("v1/collections", new JsonObject { ["name"] = "browser", ["model"] = "clip-tiny" });
        foreach (string contentType in new[] { "text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded" })
        {
            var response = await RawHttp.PostAsync(client, path, body, contentType);
            RawHttp.AssertError(response, 415);
            Assert.Equal("invalid_json", response.Body!["error"]!["code"]!.GetValue<string>());
        }

        using var noType = new ByteArrayContent(System.Text.Encoding.UTF8.GetBytes(body));
        using HttpResponseMessage untyped = await client.PostAsync(path, noType);
        Assert.Equal(HttpStatusCode.UnsupportedMediaType, untyped.StatusCode);
    }

    [Theory]
    [InlineData("application/json")]
    [InlineData("application/json; charset=utf-8")]
    [InlineData("Application/JSON;charset=UTF-8")]
    public async Task JsonIsAcceptedWithOrWithoutACharset(string contentType)
    {
        using HttpClient client = server.Client();
        var (status, _) = await RawHttp.PostAsync(client, "v1/embeddings", """{"model":"clip-tiny","input":"a red square"}""", contentType);
        Assert.Equal(200, status);
        (status, _) = await RawHttp.PostAsync(client, "tokenize", """{"model":"tiny","prompt":"In"}""", contentType);
        Assert.Equal(200, status);
    }
}
