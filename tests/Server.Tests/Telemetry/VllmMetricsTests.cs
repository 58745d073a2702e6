using System.Globalization;
using System.Net.Http.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Tests.Telemetry;

/// <summary>
/// vLLM's metric names on /metrics (what fleet routers read), beside ours and with the same
/// values: queue, running, KV usage, prefix-cache queries and hits, preemptions.
/// </summary>
[Collection(TelemetryCollection.Name)]
public sealed class VllmMetricsTests(ServingServer server) : IClassFixture<ServingServer>
{
    private const string Tiny = "{model_name=\"tiny\"}";

    [Fact]
    public async Task VllmNamesCarryOurValues()
    {
        using HttpClient client = server.Client();
        string before = await client.GetStringAsync("metrics");

        // The same prompt twice: the second can restore whole blocks from the prefix cache.
        string prompt = string.Join(' ', Enumerable.Repeat("In the beginning God created the heaven and the earth.", 8));
        long promptTokens = 0, cachedTokens = 0;
        for (int i = 0; i < 2; i++)
        {
            using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = prompt, ["max_tokens"] = 4 });
            JsonNode usage = (await response.Content.ReadFromJsonAsync<JsonNode>())!["usage"]!;
            promptTokens += usage["prompt_tokens"]!.GetValue<long>();
            cachedTokens += usage["prompt_tokens_details"]!["cached_tokens"]!.GetValue<long>();
        }

        string after = await client.GetStringAsync("metrics");
        Assert.Equal(promptTokens, Value(after, "vllm:prefix_cache_queries_total" + Tiny) - Value(before, "vllm:prefix_cache_queries_total" + Tiny));
        Assert.Equal(cachedTokens, Value(after, "vllm:prefix_cache_hits_total" + Tiny) - Value(before, "vllm:prefix_cache_hits_total" + Tiny));
        Assert.Equal(0, Value(after, "vllm:num_requests_waiting" + Tiny));
        Assert.Equal(0, Value(after, "vllm:num_requests_running" + Tiny));
        Assert.Equal(Value(after, "serving_kv_cache_usage{", "gen_ai_request_model=\"tiny\""), Value(after, "vllm:kv_cache_usage_perc" + Tiny));
        Assert.Equal(Value(after, "serving_preemptions_total{", "gen_ai_request_model=\"tiny\""), Value(after, "vllm:num_preemptions_total" + Tiny));
        Assert.Contains("# TYPE vllm:num_preemptions_total counter\n", after, StringComparison.Ordinal);
        Assert.Contains("# TYPE vllm:kv_cache_usage_perc gauge\n", after, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OpenMetricsKeepsOneEofAtTheEnd()
    {
        using HttpClient client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "metrics");
        request.Headers.Accept.ParseAdd("application/openmetrics-text; version=1.0.0");
        using HttpResponseMessage response = await client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();

        Assert.StartsWith("application/openmetrics-text", response.Content.Headers.ContentType!.ToString(), StringComparison.Ordinal);
        Assert.EndsWith("\n# EOF\n", text, StringComparison.Ordinal);
        Assert.Equal(text.Length - "# EOF\n".Length, text.IndexOf("# EOF", StringComparison.Ordinal));
        // OpenMetrics names the counter family without _total; its sample keeps it.
        Assert.Contains("# TYPE vllm:num_preemptions counter\n", text, StringComparison.Ordinal);
        Assert.Contains("vllm:num_preemptions_total" + Tiny + " ", text, StringComparison.Ordinal);
        Assert.Contains("vllm:num_requests_waiting" + Tiny + " 0\n", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task AScraperAskingForGzipGetsReadableText()
    {
        // Prometheus sends Accept-Encoding: gzip; the exporter's gzip with our lines after it was unreadable.
        using HttpClient client = server.Client();
        using var request = new HttpRequestMessage(HttpMethod.Get, "metrics");
        request.Headers.Accept.ParseAdd("application/openmetrics-text; version=1.0.0");
        request.Headers.AcceptEncoding.ParseAdd("gzip");
        using HttpResponseMessage response = await client.SendAsync(request);
        byte[] body = await response.Content.ReadAsByteArrayAsync();
        Stream text = new MemoryStream(body);
        if (response.Content.Headers.ContentEncoding.Contains("gzip"))
        {
            text = new System.IO.Compression.GZipStream(text, System.IO.Compression.CompressionMode.Decompress);
        }

        string metrics = await new StreamReader(text).ReadToEndAsync();
        Assert.Contains("vllm:num_requests_waiting" + Tiny, metrics, StringComparison.Ordinal);
        Assert.EndsWith("\n# EOF\n", metrics, StringComparison.Ordinal);
        Assert.Equal(body.Length, response.Content.Headers.ContentLength);
    }

    /// <summary>The value of the first sample line that starts with <paramref name="prefix"/> and contains <paramref name="label"/>.</summary>
    private static double Value(string metrics, string prefix, string label = "")
    {
        foreach (string line in metrics.Split('\n'))
        {
            if (line.StartsWith(prefix, StringComparison.Ordinal) && line.Contains(label, StringComparison.Ordinal))
            {
                // name{labels} value [timestamp]
                string[] fields = line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ');
                return double.Parse(fields[0], CultureInfo.InvariantCulture);
            }
        }

        throw new Xunit.Sdk.XunitException($"no sample {prefix}…{label} on /metrics:\n{metrics}");
    }
}
