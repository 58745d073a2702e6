using System.Net;
using System.Net.Http.Json;

namespace Serving.Server.Tests.Apis;

/// <summary>A server that cancels requests after one second.</summary>
public sealed class ImpatientServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string> { ["Serving:RequestTimeoutSeconds"] = "1" };
}

public class TimeoutTests(ImpatientServer server) : IClassFixture<ImpatientServer>
{
    [Fact]
    public async Task ARequestPastTheTimeoutIsCancelledAndFreesItsMemory()
    {
        using HttpClient client = server.Client();
        // 16 choices of 1,900 tokens take the tiny model several seconds on two cores.
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", new { model = "tiny", prompt = "Long", max_tokens = 1900, n = 16, ignore_eos = true });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("timeout", (await OpenAiErrorReader.Read(response)).Code);
        for (int i = 0; i < 100 && server.Engine.Kv.NumUsedBlocks > 0; i++)
        {
            await Task.Delay(20);
        }

        Assert.Equal(0, server.Engine.Kv.NumUsedBlocks);
    }
}
