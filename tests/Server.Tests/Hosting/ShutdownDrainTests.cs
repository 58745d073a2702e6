using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.Extensions.DependencyInjection;
using Serving.Server.Hosting;

namespace Serving.Server.Tests.Hosting;

/// <summary>A server that gives running requests a minute to finish when it stops.</summary>
public sealed class PatientShutdownServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string> { ["Serving:ShutdownDrainSeconds"] = "60" };
}

/// <summary>A server that cancels what runs as soon as it stops.</summary>
public sealed class NoDrainServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string> { ["Serving:ShutdownDrainSeconds"] = "0" };
}

public class ShutdownDrainTests
{
    private static object LongCompletion(bool stream) =>
        new { model = "tiny", prompt = "Long", max_tokens = 1900, n = stream ? 1 : 16, ignore_eos = true, stream };

    [Fact]
    public async Task WhileDrainingNewRequestsGet503ReadinessSaysDrainingAndRunningRequestsFinish()
    {
        using var server = new PatientShutdownServer();
        using HttpClient client = server.Client();
        ShutdownDrain drain = server.Services.GetRequiredService<ShutdownDrain>();

        // A request whose body is still arriving is running, whatever the engine's speed.
        var body = new HeldBodyContent("""{"model":"tiny","messages":[{"role":"user","content":"Hi"}],"max_tokens":3}""");
        Task<HttpResponseMessage> running = client.PostAsync("v1/chat/completions", body);
        await WaitUntil(() => drain.NumInFlight == 1);

        Task stopping = server.Host.StopAsync();
        await WaitUntil(() => drain.IsDraining);

        using HttpClient other = server.Client();
        using HttpResponseMessage refused = await other.PostAsJsonAsync("v1/chat/completions",
            new { model = "tiny", messages = new[] { new { role = "user", content = "Hi" } }, max_tokens = 3 });
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        var error = await OpenAiErrorReader.Read(refused);
        Assert.Equal("shutting_down", error.Code);
        Assert.Equal("server_error", error.Type);

        using HttpResponseMessage ready = await other.GetAsync("health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
        Assert.Equal("draining", (await ready.Content.ReadFromJsonAsync<JsonObject>())!["status"]!.GetValue<string>());
        using HttpResponseMessage live = await other.GetAsync("health/live");
        Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        Assert.False(stopping.IsCompleted);

        body.Release();
        using HttpResponseMessage finished = await running;
        Assert.Equal(HttpStatusCode.OK, finished.StatusCode);
        await stopping;
    }

    [Fact]
    public async Task AStreamRunningAtTheEndOfTheDrainGetsAnErrorEventAndDone()
    {
        using var server = new NoDrainServer();
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.SendAsync(
            new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = JsonContent.Create(LongCompletion(stream: true)) },
            HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync(), Encoding.UTF8);
        string? first = await reader.ReadLineAsync();
        Assert.StartsWith("data: {", first);

        // Read on while the host stops, so the server's last writes never wait on a full socket.
        Task<string> rest = reader.ReadToEndAsync();
        await server.Host.StopAsync();
        // A reset connection would throw here instead of ending the body.
        string[] events = (await rest).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);

        Assert.Equal("data: [DONE]", events[^1]);
        JsonNode last = JsonNode.Parse(events[^2]["data: ".Length..])!;
        Assert.Equal("shutting_down", last["error"]!["code"]!.GetValue<string>());
        Assert.Equal("server_error", last["error"]!["type"]!.GetValue<string>());
    }

    [Fact]
    public async Task ARequestRunningAtTheEndOfTheDrainGets503()
    {
        using var server = new NoDrainServer();
        using HttpClient client = server.Client();
        Task<HttpResponseMessage> running = client.PostAsJsonAsync("v1/completions", LongCompletion(stream: false));
        await WaitUntil(() => server.Engine.NumRunning > 0);

        await server.Host.StopAsync();
        using HttpResponseMessage response = await running;

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var error = await OpenAiErrorReader.Read(response);
        Assert.Equal("shutting_down", error.Code);
        Assert.Contains("drain time of 0 s", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Polls <paramref name="condition"/>; the bound only keeps a broken server from hanging the run.</summary>
    private static async Task WaitUntil(Func<bool> condition)
    {
        for (int i = 0; i < 6000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }

    /// <summary>A JSON body sent in two parts: the second only after <see cref="Release"/>.</summary>
    private sealed class HeldBodyContent : HttpContent
    {
        private readonly byte[] _json;
        private readonly TaskCompletionSource _released = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public HeldBodyContent(string json)
        {
            _json = Encoding.UTF8.GetBytes(json);
            Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("application/json");
        }

        public void Release() => _released.TrySetResult();

        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            await stream.WriteAsync(_json.AsMemory(0, 1));
            await stream.FlushAsync();
            await _released.Task;
            await stream.WriteAsync(_json.AsMemory(1));
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }
}
