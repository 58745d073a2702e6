using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;

namespace Serving.Server.Tests.Http;

/// <summary>What escapes a handler or the framework's binding takes the OpenAI shape with one code per kind of failure.</summary>
public sealed class OpenAiErrorMiddlewareTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Theory]
    [InlineData("v1/chat/completions", "application/json")]
    [InlineData("v1/completions", "application/json")]
    [InlineData("tokenize", "application/json")]
    [InlineData("v1/embeddings", "application/json")]
    [InlineData("v1/collections", "application/json")]
    [InlineData("v1/collections/big/items", "application/json")]
    [InlineData("v1/collections/big/items", "multipart/form-data; boundary=b")]
    [InlineData("v1/collections/big/search", "application/json")]
    public async Task EveryBodyOverTheLimitIs413WithOneCode(string path, string contentType)
    {
        using HttpClient client = server.Client();
        await client.PostAsJsonAsync("v1/collections", new JsonObject { ["name"] = "big", ["model"] = "clip-tiny" });
        string body = contentType.StartsWith("multipart", StringComparison.Ordinal)
            ? "--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"a.png\"\r\nContent-Type: image/png\r\n\r\n" + new string('a', 70_000) + "\r\n--b--\r\n"
            : "{\"model\":\"x\",\"prompt\":\"" + new string('a', 70_000) + "\"}";

        var answer = await RawHttp.PostAsync(client, path, Encoding.UTF8.GetBytes(body), contentType);

        RawHttp.AssertError(answer, 413);
        Assert.Equal("request_too_large", answer.Body!["error"]!["code"]!.GetValue<string>());
    }

    [Fact]
    public async Task AQueryParameterOfTheWrongTypeIsA400NamingIt()
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.GetAsync("v1/collections/any/items/any?include_vector=x");
        var error = await OpenAiErrorReader.Read(response);
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Equal("include_vector", error.Param);
        Assert.DoesNotContain("body", error.Message);
    }
}
