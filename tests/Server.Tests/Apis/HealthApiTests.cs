using System.Net;
using System.Net.Http.Json;

namespace Serving.Server.Tests.Apis;

public class HealthApiTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Fact]
    public async Task LiveAndReadyAnswerOkOnceTheModelIsLoaded()
    {
        using HttpClient client = server.Client();
        var live = await client.GetFromJsonAsync<Dictionary<string, string>>("health/live");
        Assert.Equal("live", live!["status"]);
        var ready = await client.GetFromJsonAsync<Dictionary<string, string>>("health/ready");
        Assert.Equal("ready", ready!["status"]);
    }

    [Fact]
    public async Task UnknownRoutesAreNotFoundInTheOpenAiShape()
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.GetAsync("health/unknown");
        Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
        Assert.Contains("/health/unknown", (await OpenAiErrorReader.Read(response)).Message);
    }
}
