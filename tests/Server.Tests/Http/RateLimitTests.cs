using System.Net;
using System.Net.Http.Headers;

namespace Serving.Server.Tests.Http;

/// <summary>Two keys, three requests a minute each.</summary>
public sealed class RateLimitedServer : ServingServer
{
    public const string First = "sk-limited-1";

    public const string Second = "sk-limited-2";

    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:ApiKeys:0"] = First,
        ["Serving:ApiKeys:1"] = Second,
        ["Serving:RateLimit:RequestsPerMinute"] = "3",
    };
}

public sealed class RateLimitTests(RateLimitedServer server) : IClassFixture<RateLimitedServer>
{
    [Fact]
    public async Task EachKeyHasItsOwnLimitAndTheFourthRequestIsA429WithRetryAfter()
    {
        using HttpClient first = Client(RateLimitedServer.First);
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await first.GetAsync("v1/models")).StatusCode);
        }

        using HttpResponseMessage refused = await first.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.InRange(refused.Headers.RetryAfter!.Delta!.Value.TotalSeconds, 1, 60);
        OpenAiErrorReader.Error error = await OpenAiErrorReader.Read(refused);
        Assert.Equal("rate_limit_error", error.Type);
        Assert.Equal("rate_limit_exceeded", error.Code);

        using HttpClient second = Client(RateLimitedServer.Second);
        Assert.Equal(HttpStatusCode.OK, (await second.GetAsync("v1/models")).StatusCode);
        using HttpClient anonymous = server.Client();
        for (int i = 0; i < 5; i++)
        {
            Assert.Equal(HttpStatusCode.OK, (await anonymous.GetAsync("health/live")).StatusCode);
        }
    }

    private HttpClient Client(string key)
    {
        HttpClient client = server.Client();
        client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        return client;
    }
}
