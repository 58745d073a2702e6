using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Telemetry;

namespace Serving.Server.Tests.Telemetry;

[Collection(TelemetryCollection.Name)]
public sealed class TracingTests
{
    [Fact]
    public async Task RequestSpanIsTheParentOfQueuePrefillAndDecodeSpans()
    {
        var stopped = new ConcurrentBag<Activity>();
        using ActivityListener listener = RecordSpans(stopped);
        using var server = new ServingServer();
        using HttpClient client = server.Client();

        // n = 3 × 5 tokens: 15 output tokens marks this request's span among other tests' spans.
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions",
            new JsonObject { ["model"] = "tiny", ["prompt"] = "Spans", ["max_tokens"] = 5, ["n"] = 3, ["ignore_eos"] = true });
        Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync());

        Activity request = Assert.Single(stopped, a => a.DisplayName == "text_completion tiny" && (a.GetTagItem("gen_ai.usage.output_tokens") as int?) == 15);
        Assert.Equal("text_completion", request.GetTagItem(TelemetryNames.OperationName));
        Assert.Equal(3, request.GetTagItem("gen_ai.request.choice.count"));
        var children = stopped.Where(a => a.ParentSpanId == request.SpanId && a.TraceId == request.TraceId).ToList();
        Assert.Equal(3, children.Count(a => a.DisplayName == TelemetryNames.QueueSpan));
        Assert.Equal(3, children.Count(a => a.DisplayName == TelemetryNames.PrefillSpan));
        Activity[] decodes = [.. children.Where(a => a.DisplayName == TelemetryNames.DecodeSpan)];
        Assert.Equal(3, decodes.Length);
        Assert.All(decodes, decode => Assert.Equal("length", decode.GetTagItem(TelemetryNames.FinishReason)));
        // Phase spans are built after the fact from the engine's timestamps; they must still fall inside the request (1 ms for clock rounding).
        TimeSpan slack = TimeSpan.FromMilliseconds(1);
        Assert.All(children, child => Assert.InRange(child.StartTimeUtc, request.StartTimeUtc - slack, request.StartTimeUtc + request.Duration + slack));
    }

    [Fact]
    public async Task RefusedRequestsCarryTheirErrorType()
    {
        var stopped = new ConcurrentBag<Activity>();
        using ActivityListener listener = RecordSpans(stopped);
        using var server = new ServingServer();
        using HttpClient client = server.Client();

        using HttpResponseMessage unknown = await client.PostAsJsonAsync("v1/chat/completions",
            new JsonObject { ["model"] = "no-such-model-for-tracing", ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "hi" }) });
        Assert.Equal(404, (int)unknown.StatusCode);

        // Unserved names are labelled "unknown": clients cannot mint label values.
        Assert.Contains(stopped, a => a.DisplayName == "chat unknown" && (a.GetTagItem(TelemetryNames.ErrorType) as string) == "model_not_found"
            && a.Status == ActivityStatusCode.Error);
    }

    [Fact]
    public async Task DisabledTelemetryServesNoMetricsAndStillGenerates()
    {
        using var server = new TelemetryOffServer();
        using HttpClient client = server.Client();
        using HttpResponseMessage metrics = await client.GetAsync("metrics");
        Assert.Equal(404, (int)metrics.StatusCode);
        using HttpResponseMessage completion = await client.PostAsJsonAsync("v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["max_tokens"] = 3 });
        Assert.True(completion.IsSuccessStatusCode);
    }

    private sealed class TelemetryOffServer : ServingServer
    {
        protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string> { ["Serving:Telemetry:Enabled"] = "false" };
    }

    /// <summary>Collects every span of Serving's ActivitySource that ends while the listener lives.</summary>
    private static ActivityListener RecordSpans(ConcurrentBag<Activity> stopped)
    {
        var listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == TelemetryNames.Source,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = stopped.Add,
        };
        ActivitySource.AddActivityListener(listener);
        return listener;
    }
}
