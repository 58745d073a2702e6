using System.Net;
using System.Net.Http.Json;

namespace Serving.Server.Tests.Apis;

/// <summary>A server that runs one sequence at a time and whose queue holds one more.</summary>
public sealed class OneSlotServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:MaxBatchSize"] = "1",
        ["Serving:MaxQueueLength"] = "1",
    };
}

public class BackpressureTests(OneSlotServer server) : IClassFixture<OneSlotServer>
{
    [Fact]
    public async Task AFullQueueIsRefusedWith429AndRetryAfter()
    {
        using HttpClient client = server.Client();
        object Long(int tokens) => new { model = "tiny", prompt = "Long", max_tokens = tokens, ignore_eos = true, stream = true };

        var running = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = JsonContent.Create(Long(1900)) },
            HttpCompletionOption.ResponseHeadersRead);
        var queued = client.PostAsJsonAsync("v1/completions", Long(1000));
        for (int i = 0; i < 100 && server.Engine.NumWaiting == 0; i++)
        {
            await Task.Delay(20);
        }

        using HttpResponseMessage refused = await client.PostAsJsonAsync("v1/completions", Long(5));
        Assert.Equal(HttpStatusCode.TooManyRequests, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Equal("queue_full", (await OpenAiErrorReader.Read(refused)).Code);

        running.Dispose();
        using HttpResponseMessage late = await queued;
        Assert.Equal(HttpStatusCode.OK, late.StatusCode);
    }
}
