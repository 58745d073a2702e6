using System.Net;

namespace Serving.Server.Tests.Http;

/// <summary>A page on another origin reads no answer unless the operator lists its origin in Serving:Cors:AllowedOrigins.</summary>
public sealed class CorsDefaultTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Fact]
    public async Task NoCorsHeaderIsSentByDefault()
    {
        using HttpClient client = server.Client();
        using var get = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        get.Headers.Add("Origin", "https://evil.example.com");
        using HttpResponseMessage answer = await client.SendAsync(get);
        Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        Assert.False(answer.Headers.Contains("Access-Control-Allow-Origin"));

        using HttpResponseMessage preflight = await client.SendAsync(CorsRequests.Preflight("https://evil.example.com"));
        Assert.False(preflight.Headers.Contains("Access-Control-Allow-Origin"));
    }
}

public static class CorsRequests
{
    /// <summary>What a browser sends before a cross-origin JSON POST with a key.</summary>
    public static HttpRequestMessage Preflight(string origin)
    {
        var request = new HttpRequestMessage(HttpMethod.Options, "v1/chat/completions");
        request.Headers.Add("Origin", origin);
        request.Headers.Add("Access-Control-Request-Method", "POST");
        request.Headers.Add("Access-Control-Request-Headers", "authorization,content-type");
        return request;
    }
}

/// <summary>An operator's configuration: one allowed web origin, the hosts the server answers to, and an API key.</summary>
public sealed class ConfiguredOriginServer : ServingServer
{
    public const string Origin = "https://app.example.com";

    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:Cors:AllowedOrigins:0"] = Origin,
        ["Serving:ApiKeys:0"] = ApiKeyServer.Key,
        ["AllowedHosts"] = "127.0.0.1;serving.example.com",
    };
}

public sealed class ConfiguredOriginTests(ConfiguredOriginServer server) : IClassFixture<ConfiguredOriginServer>
{
    [Fact]
    public async Task APreflightFromAConfiguredOriginIsAllowedWithoutAKey()
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage preflight = await client.SendAsync(CorsRequests.Preflight(ConfiguredOriginServer.Origin));
        Assert.Equal(HttpStatusCode.NoContent, preflight.StatusCode);
        Assert.Equal(ConfiguredOriginServer.Origin, Assert.Single(preflight.Headers.GetValues("Access-Control-Allow-Origin")));
        Assert.Contains("POST", string.Join(",", preflight.Headers.GetValues("Access-Control-Allow-Methods")), StringComparison.Ordinal);

        using HttpResponseMessage other = await client.SendAsync(CorsRequests.Preflight("https://evil.example.com"));
        Assert.False(other.Headers.Contains("Access-Control-Allow-Origin"));
    }

    [Fact]
    public async Task APageOfTheOriginCanReadA401()
    {
        using HttpClient client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "v1/models");
        request.Headers.Add("Origin", ConfiguredOriginServer.Origin);
        using HttpResponseMessage response = await client.SendAsync(request);
        await KeyRefusal.AssertRefused(response);
        Assert.Equal(ConfiguredOriginServer.Origin, Assert.Single(response.Headers.GetValues("Access-Control-Allow-Origin")));
    }

    [Theory]
    [InlineData("evil.example.com", HttpStatusCode.BadRequest)]
    [InlineData("localhost", HttpStatusCode.BadRequest)]
    [InlineData("serving.example.com", HttpStatusCode.OK)]
    public async Task OnlyTheAllowedHostsAreServed(string host, HttpStatusCode expected)
    {
        using HttpClient client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "health/live");
        request.Headers.Host = host;
        using HttpResponseMessage response = await client.SendAsync(request);
        Assert.Equal(expected, response.StatusCode);
    }
}
