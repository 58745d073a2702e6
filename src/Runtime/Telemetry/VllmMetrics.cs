using System.Globalization;
using System.Text;

namespace Serving.Runtime.Telemetry;

/// <summary>One engine's figures under vLLM's metric names (see <see cref="VllmMetrics"/>).</summary>
public readonly record struct VllmSample(
    string Model, int NumWaiting, int NumRunning, double KvUsage, long NumPrefixQueries, long NumPrefixHits, long NumPreemptions);

/// <summary>
/// vLLM's metric names beside ours, for fleet routers (the Gateway API Inference Extension's
/// endpoint picker, llm-d) that pick a replica by its queue and KV usage under these names.
/// OpenTelemetry cannot carry them: its instrument names allow no ':' (the SDK drops such an
/// instrument), so the server appends these lines to the exporter's <c>/metrics</c> text itself,
/// labelled <c>model_name</c> as vLLM labels them. Same values as our <c>serving_*</c> series.
/// </summary>
public static class VllmMetrics
{
    public const string RequestsWaiting = "vllm:num_requests_waiting";
    public const string RequestsRunning = "vllm:num_requests_running";
    public const string KvCacheUsage = "vllm:kv_cache_usage_perc";
    public const string PrefixCacheQueries = "vllm:prefix_cache_queries";
    public const string PrefixCacheHits = "vllm:prefix_cache_hits";
    public const string Preemptions = "vllm:num_preemptions";
    public const string ModelLabel = "model_name";

    /// <summary>
    /// Appends the families to <paramref name="text"/> in the Prometheus text format, or in
    /// OpenMetrics (<paramref name="openMetrics"/>), where a counter's family name has no
    /// <c>_total</c> and only its sample does. Nothing when no engine is tracked.
    /// </summary>
    public static void Write(StringBuilder text, IReadOnlyList<VllmSample> samples, bool openMetrics)
    {
        if (samples.Count == 0)
        {
            return;
        }

        Family(text, samples, RequestsWaiting, "gauge", "Requests waiting to be scheduled (serving_requests_waiting).", openMetrics, s => s.NumWaiting);
        Family(text, samples, RequestsRunning, "gauge", "Requests prefilling or decoding (serving_requests_running).", openMetrics, s => s.NumRunning);
        Family(text, samples, KvCacheUsage, "gauge", "KV-cache usage, 1 means 100 percent (serving_kv_cache_usage).", openMetrics, s => s.KvUsage);
        Family(text, samples, PrefixCacheQueries, "counter", "Prompt tokens looked up in the prefix cache (serving_prompt_tokens_total).", openMetrics, s => s.NumPrefixQueries);
        Family(text, samples, PrefixCacheHits, "counter", "Prompt tokens found in the prefix cache (serving_prompt_tokens_cached_total).", openMetrics, s => s.NumPrefixHits);
        Family(text, samples, Preemptions, "counter", "Preemptions (serving_preemptions_total).", openMetrics, s => s.NumPreemptions);
    }

    private static void Family(StringBuilder text, IReadOnlyList<VllmSample> samples, string name, string type, string help, bool openMetrics, Func<VllmSample, double> value)
    {
        bool isCounter = type == "counter";
        string family = isCounter && !openMetrics ? name + "_total" : name;
        string sample = isCounter ? name + "_total" : name;
        text.Append("# HELP ").Append(family).Append(' ').Append(help).Append('\n');
        text.Append("# TYPE ").Append(family).Append(' ').Append(type).Append('\n');
        foreach (VllmSample s in samples)
        {
            text.Append(sample).Append('{').Append(ModelLabel).Append("=\"").Append(Escape(s.Model)).Append("\"} ")
                .Append(value(s).ToString("R", CultureInfo.InvariantCulture)).Append('\n');
        }
    }

    private static string Escape(string label) =>
        label.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);
}
