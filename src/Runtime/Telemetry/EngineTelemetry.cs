using System.Diagnostics;
using Serving.Runtime.Generation;

namespace Serving.Runtime.Telemetry;

/// <summary>
/// What one model's engine records, called at its step boundaries: prefill done (queue and
/// prefill time, prompt tokens), each decode step (batch size, generated tokens), a sequence's
/// end (finish reason, decode time, the phase spans) and KV evictions. The model tag is made
/// once; no call allocates unless a trace is being recorded.
/// </summary>
public sealed class EngineTelemetry
{
    /// <summary>Records nothing: the engine without a server (tests, the CLI).</summary>
    public static readonly EngineTelemetry None = new(null, "", "none");

    private static readonly KeyValuePair<string, object?>[] Reasons =
    [
        new(TelemetryNames.FinishReason, "stop"),
        new(TelemetryNames.FinishReason, "length"),
        new(TelemetryNames.FinishReason, "cancelled"),
        new(TelemetryNames.FinishReason, "error"),
    ];

    private readonly ServingTelemetry? _telemetry;
    private readonly KeyValuePair<string, object?> _model;
    private long _numPromptTokens;
    private long _numCachedPromptTokens;

    internal EngineTelemetry(ServingTelemetry? telemetry, string model, string kvPolicy)
    {
        _telemetry = telemetry;
        Model = model;
        _model = ServingTelemetry.Model(model);
        // Known label sets start at 0 (Prometheus' advice), so rate() over evictions reads 0 rather than nothing before the first one.
        telemetry?.KvEvictedTokens.Add(0, _model, new(TelemetryNames.KvPolicy, kvPolicy));
        telemetry?.KvCompressions.Add(0, _model, new(TelemetryNames.KvPolicy, kvPolicy));
    }

    public string Model { get; }

    /// <summary>Prompt tokens of sequences that finished prefill, cached ones included (vLLM's prefix-cache queries).</summary>
    public long NumPromptTokens => Interlocked.Read(ref _numPromptTokens);

    /// <summary>Prompt tokens restored from the prefix cache (vLLM's prefix-cache hits).</summary>
    public long NumCachedPromptTokens => Interlocked.Read(ref _numCachedPromptTokens);

    /// <summary>The prompt is read and the first token sampled.</summary>
    internal void PrefillDone(Sequence sequence)
    {
        if (_telemetry is not { } t)
        {
            return;
        }

        SequenceTrace trace = sequence.Trace;
        trace.FirstToken();
        t.QueueTime.Record(Stopwatch.GetElapsedTime(trace.QueuedAt, trace.AdmittedAt).TotalSeconds, _model);
        t.PrefillTime.Record(Stopwatch.GetElapsedTime(trace.AdmittedAt, trace.FirstTokenAt).TotalSeconds, _model);
        t.PromptTokens.Add(sequence.PromptLength, _model);
        t.CachedPromptTokens.Add(sequence.CachedTokens, _model);
        Interlocked.Add(ref _numPromptTokens, sequence.PromptLength);
        Interlocked.Add(ref _numCachedPromptTokens, sequence.CachedTokens);
        t.GenerationTokens.Add(1, _model);
        if (trace.IsTraced)
        {
            Span(TelemetryNames.QueueSpan, trace, trace.QueuedAt, trace.AdmittedAt)?.Dispose();
            using Activity? prefill = Span(TelemetryNames.PrefillSpan, trace, trace.AdmittedAt, trace.FirstTokenAt);
            prefill?.SetTag("gen_ai.usage.input_tokens", sequence.PromptLength).SetTag("serving.prompt_tokens.cached", sequence.CachedTokens);
        }
    }

    /// <summary>One decode call over <paramref name="rows"/> sequences, each of which got a token.</summary>
    public void DecodeStep(int rows)
    {
        if (_telemetry is { } t)
        {
            t.BatchSize.Record(rows, _model);
            t.GenerationTokens.Add(rows, _model);
        }
    }

    /// <summary>A sequence ended (or was cancelled while it waited).</summary>
    internal void Finished(Sequence sequence, FinishReason reason)
    {
        if (_telemetry is not { } t)
        {
            return;
        }

        t.RequestsFinished.Add(1, _model, Reasons[(int)reason]);
        SequenceTrace trace = sequence.Trace;
        if (trace.FirstTokenAt == 0)
        {
            return;
        }

        long now = Stopwatch.GetTimestamp();
        t.DecodeTime.Record(Stopwatch.GetElapsedTime(trace.FirstTokenAt, now).TotalSeconds, _model);
        if (trace.IsTraced)
        {
            using Activity? decode = Span(TelemetryNames.DecodeSpan, trace, trace.FirstTokenAt, now);
            decode?.SetTag("gen_ai.usage.output_tokens", sequence.NumGenerated).SetTag(Reasons[(int)reason].Key, Reasons[(int)reason].Value);
            foreach (ActivityEvent eviction in trace.Evictions)
            {
                decode?.AddEvent(eviction);
            }
        }
    }

    /// <summary>
    /// A KV compression event that evicted <paramref name="evictedTokens"/> tokens of
    /// <paramref name="trace"/>'s sequence: the counters, and an event on its decode span.
    /// </summary>
    public void KvEvicted(SequenceTrace? trace, string policy, int evictedTokens)
    {
        _telemetry?.RecordKvEviction(Model, policy, evictedTokens);
        trace?.AddEviction(policy, evictedTokens);
    }

    /// <summary>A child span of the request, started and ended at the given times (its caller disposes it).</summary>
    private Activity? Span(string name, SequenceTrace trace, long start, long end)
    {
        Activity? activity = _telemetry!.ActivitySource.StartActivity(name, ActivityKind.Internal, trace.Parent, startTime: trace.UtcAt(start));
        activity?.SetTag(TelemetryNames.RequestModel, Model);
        activity?.SetEndTime(trace.UtcAt(end));
        return activity;
    }
}
