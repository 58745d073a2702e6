using System.Diagnostics;
using System.Diagnostics.Metrics;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Telemetry;

/// <summary>
/// The Meter and ActivitySource of Serving and every instrument on them. One instance per
/// process (the server's DI singleton); engines, the embedder and the retrieval service get it
/// at construction. Without a listener (telemetry disabled, or the CLI) every record call is
/// a branch on <c>Instrument.Enabled</c>. Histograms carry the bucket advice of the GenAI
/// semantic conventions, so exporters need no views.
/// </summary>
public sealed class ServingTelemetry : IDisposable
{
    // Bucket advice of the GenAI semantic conventions (gen-ai-metrics.md).
    private static readonly double[] DurationBuckets = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92];
    private static readonly double[] FirstTokenBuckets = [0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0];
    private static readonly double[] PerTokenBuckets = [0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5];
    private static readonly long[] TokenBuckets = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864];

    // Serving's own: batch sizes are powers of two up to the largest MaxBatchSize; embedding and search are sub-millisecond to seconds.
    private static readonly int[] BatchBuckets = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];
    private static readonly double[] FastBuckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    private readonly Meter _meter;
    private readonly object _lock = new();
    private readonly List<(KeyValuePair<string, object?> Model, Engine Engine)> _engines = [];
    private readonly List<Func<IEnumerable<IndexSize>>> _indexes = [];
    private readonly KeyValuePair<string, object?> _isa;

    public ServingTelemetry(IMeterFactory? meterFactory = null, string? sparseIsa = null)
    {
        _meter = meterFactory?.Create(TelemetryNames.Source) ?? new Meter(TelemetryNames.Source);
        ActivitySource = new ActivitySource(TelemetryNames.Source);
        _isa = new(TelemetryNames.Isa, sparseIsa ?? "unavailable");

        RequestDuration = Seconds(TelemetryNames.RequestDuration, "GenAI server request duration, to the last output token.", DurationBuckets);
        TimeToFirstToken = Seconds(TelemetryNames.TimeToFirstToken, "Time to generate the first token, for successful responses.", FirstTokenBuckets);
        TimePerOutputToken = Seconds(TelemetryNames.TimePerOutputToken, "Time per output token after the first, for successful responses.", PerTokenBuckets);
        TokenUsage = _meter.CreateHistogram(TelemetryNames.TokenUsage, "{token}", "Input and output tokens per request.",
            advice: new InstrumentAdvice<long> { HistogramBucketBoundaries = TokenBuckets });

        QueueTime = Seconds(TelemetryNames.QueueTime, "Time a sequence waited for KV memory and batch room.", FirstTokenBuckets);
        PrefillTime = Seconds(TelemetryNames.PrefillTime, "Time from admission to the first token (prompt read).", FirstTokenBuckets);
        DecodeTime = Seconds(TelemetryNames.DecodeTime, "Time from the first token to the sequence's end.", DurationBuckets);
        BatchSize = _meter.CreateHistogram(TelemetryNames.BatchSize, "{sequence}", "Sequences in each decode step.",
            advice: new InstrumentAdvice<int> { HistogramBucketBoundaries = BatchBuckets });
        RequestsFinished = _meter.CreateCounter<long>(TelemetryNames.RequestsFinished, "{sequence}", "Sequences ended, by finish reason.");
        PromptTokens = _meter.CreateCounter<long>(TelemetryNames.PromptTokens, "{token}", "Prompt tokens of sequences that finished prefill (cached ones included).");
        CachedPromptTokens = _meter.CreateCounter<long>(TelemetryNames.CachedPromptTokens, "{token}", "Prompt tokens restored from the prefix cache.");
        GenerationTokens = _meter.CreateCounter<long>(TelemetryNames.GenerationTokens, "{token}", "Tokens generated.");
        KvEvictedTokens = _meter.CreateCounter<long>(TelemetryNames.KvEvictedTokens, "{token}", "Tokens evicted from KV caches, by policy.");
        KvCompressions = _meter.CreateCounter<long>(TelemetryNames.KvCompressions, "{event}", "KV compression (eviction) events, by policy.");
        EmbeddingDuration = Seconds(TelemetryNames.EmbeddingDuration, "Time to embed one batch of texts or images.", FastBuckets);
        RetrievalSearchDuration = Seconds(TelemetryNames.RetrievalSearchDuration, "Time of one collection search (query embedding included).", FastBuckets);

        _meter.CreateObservableUpDownCounter(TelemetryNames.RequestsRunning, () => PerEngine(e => e.NumRunning), "{sequence}", "Sequences prefilling or decoding.");
        _meter.CreateObservableUpDownCounter(TelemetryNames.RequestsWaiting, () => PerEngine(e => e.NumWaiting), "{sequence}", "Sequences waiting for KV memory.");
        _meter.CreateObservableUpDownCounter(TelemetryNames.KvUsedBytes, () => PerEngine(e => e.Kv.NumUsedBlocks * e.Kv.BlockBytes), "By", "KV bytes in blocks that running sequences hold.");
        _meter.CreateObservableUpDownCounter(TelemetryNames.KvCapacityBytes, () => PerEngine(e => e.Kv.NumBlocks * e.Kv.BlockBytes), "By", "The KV block pool (Serving:KvCacheBytes, in whole blocks).");
        _meter.CreateObservableGauge(TelemetryNames.KvUsage, () => PerEngine(e => e.Kv.Usage), "1", "Fraction of the KV blocks in use (vLLM's kv_cache_usage_perc).");
        _meter.CreateObservableUpDownCounter(TelemetryNames.KvAllocatedBytes, () => PerEngine(e => e.Kv.AllocatedBytes), "By", "Native bytes allocated for KV: the pool, allocated once at start.");
        _meter.CreateObservableUpDownCounter(TelemetryNames.KvCachedBytes, () => PerEngine(e => e.Kv.NumCachedBlocks * e.Kv.BlockBytes), "By", "KV bytes in blocks that hold a shareable prompt prefix (in use or kept for reuse).");
        _meter.CreateObservableCounter(TelemetryNames.Preemptions, () => PerEngine(e => e.NumPreemptions), "{sequence}", "Sequences whose KV blocks were taken back to make room (recomputed later).");
        _meter.CreateObservableCounter(TelemetryNames.StructuredMaskTime, () => PerEngine(e => e.StructuredMaskSeconds), "s",
            "Time spent constraining outputs to JSON (token masks, masking the logits, advancing the automaton).");
        _meter.CreateObservableGauge(TelemetryNames.SparseKernel, () => new Measurement<int>(1, _isa), "1", "The 2:4 sparse kernel ISA in use (1 for the ISA label).");
        _meter.CreateObservableUpDownCounter(TelemetryNames.RetrievalIndexItems, IndexItems, "{item}", "Vectors in each collection's search index.");
        _meter.CreateObservableGauge(TelemetryNames.ModelDevice, Devices, "1", "Where each model runs (1 for its serving.device label: cpu or cuda:N).");
    }

    public ActivitySource ActivitySource { get; }

    /// <summary>The ISA label of <see cref="TelemetryNames.SparseKernel"/>.</summary>
    public string SparseIsa => (string)_isa.Value!;

    public Histogram<double> RequestDuration { get; }
    public Histogram<double> TimeToFirstToken { get; }
    public Histogram<double> TimePerOutputToken { get; }
    public Histogram<long> TokenUsage { get; }
    public Histogram<double> QueueTime { get; }
    public Histogram<double> PrefillTime { get; }
    public Histogram<double> DecodeTime { get; }
    public Histogram<int> BatchSize { get; }
    public Counter<long> RequestsFinished { get; }
    public Counter<long> PromptTokens { get; }
    public Counter<long> CachedPromptTokens { get; }
    public Counter<long> GenerationTokens { get; }
    public Counter<long> KvEvictedTokens { get; }
    public Counter<long> KvCompressions { get; }
    public Histogram<double> EmbeddingDuration { get; }
    public Histogram<double> RetrievalSearchDuration { get; }

    /// <summary>Reports <paramref name="engine"/>'s queue and KV gauges under <paramref name="model"/>.</summary>
    public void Track(string model, Engine engine)
    {
        lock (_lock)
        {
            _engines.Add((Model(model), engine));
        }
    }

    /// <summary>One sample per tracked engine of the figures fleet routers read under vLLM's names (<see cref="VllmMetrics"/>).</summary>
    public List<VllmSample> VllmSamples()
    {
        lock (_lock)
        {
            var samples = new List<VllmSample>(_engines.Count);
            foreach (var (model, engine) in _engines)
            {
                samples.Add(new VllmSample((string)model.Value!, engine.NumWaiting, engine.NumRunning, engine.Kv.Usage,
                    engine.Telemetry.NumPromptTokens, engine.Telemetry.NumCachedPromptTokens, engine.NumPreemptions));
            }

            return samples;
        }
    }

    /// <summary>The recorder an engine serving <paramref name="model"/> calls at its step boundaries.</summary>
    public EngineTelemetry ForEngine(string model, string kvPolicy = "none") => new(this, model, kvPolicy);

    /// <summary>Starts the span and timing of one API call (<paramref name="operation"/>: chat, text_completion, embeddings).</summary>
    public GenAiOperation StartOperation(string operation, string model) => new(this, operation, model);

    /// <summary>Adds a source of index sizes (the retrieval service's collections).</summary>
    public void TrackIndexes(Func<IEnumerable<IndexSize>> sizes)
    {
        lock (_lock)
        {
            _indexes.Add(sizes);
        }
    }

    /// <summary>
    /// One KV compression event of <paramref name="policy"/> that evicted <paramref name="evictedTokens"/>
    /// tokens from a sequence of <paramref name="model"/>. Allocation-free (called from the decode loop).
    /// </summary>
    public void RecordKvEviction(string model, string policy, int evictedTokens)
    {
        KeyValuePair<string, object?> modelTag = new(TelemetryNames.RequestModel, model), policyTag = new(TelemetryNames.KvPolicy, policy);
        KvEvictedTokens.Add(evictedTokens, modelTag, policyTag);
        KvCompressions.Add(1, modelTag, policyTag);
    }

    /// <summary>Times one embedding batch: <c>using (telemetry.TimeEmbedding(model, "text")) { ... }</c>.</summary>
    public Timing TimeEmbedding(string model, string inputType) =>
        new(EmbeddingDuration, Model(model), new(TelemetryNames.InputType, inputType));

    /// <summary>Times one search of <paramref name="collection"/>.</summary>
    public Timing TimeSearch(string collection, string model) =>
        new(RetrievalSearchDuration, Model(model), new(TelemetryNames.Collection, collection));

    internal static KeyValuePair<string, object?> Model(string model) => new(TelemetryNames.RequestModel, model);

    private Histogram<double> Seconds(string name, string description, double[] buckets) =>
        _meter.CreateHistogram(name, "s", description, advice: new InstrumentAdvice<double> { HistogramBucketBoundaries = buckets });

    private List<Measurement<int>> Devices()
    {
        lock (_lock)
        {
            var measurements = new List<Measurement<int>>(_engines.Count);
            foreach (var (model, engine) in _engines)
            {
                measurements.Add(new Measurement<int>(1, model, new(TelemetryNames.Device, engine.Model.Device.Name)));
            }

            return measurements;
        }
    }

    private List<Measurement<T>> PerEngine<T>(Func<Engine, T> read)
        where T : struct
    {
        lock (_lock)
        {
            var measurements = new List<Measurement<T>>(_engines.Count);
            foreach (var (model, engine) in _engines)
            {
                measurements.Add(new Measurement<T>(read(engine), model));
            }

            return measurements;
        }
    }

    private List<Measurement<long>> IndexItems()
    {
        lock (_lock)
        {
            var measurements = new List<Measurement<long>>();
            foreach (Func<IEnumerable<IndexSize>> source in _indexes)
            {
                foreach (IndexSize size in source())
                {
                    measurements.Add(new Measurement<long>(size.Items, Model(size.Model), new(TelemetryNames.Collection, size.Collection)));
                }
            }

            return measurements;
        }
    }

    public void Dispose()
    {
        _meter.Dispose();
        ActivitySource.Dispose();
    }

    /// <summary>Records the seconds between its creation and its disposal into a histogram, with two tags.</summary>
    public readonly struct Timing(Histogram<double> histogram, KeyValuePair<string, object?> first, KeyValuePair<string, object?> second) : IDisposable
    {
        private readonly long _start = Stopwatch.GetTimestamp();

        public void Dispose() => histogram.Record(Stopwatch.GetElapsedTime(_start).TotalSeconds, first, second);
    }
}

/// <summary>The size of one collection's search index.</summary>
public readonly record struct IndexSize(string Collection, string Model, long Items);
