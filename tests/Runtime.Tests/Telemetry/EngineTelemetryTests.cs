using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Telemetry;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Telemetry;

public sealed class EngineTelemetryTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    /// <summary>Sums every measurement of Serving's instruments tagged with one model, by instrument name and tag values.</summary>
    private sealed class Recorder : IDisposable
    {
        private readonly MeterListener _listener = new();
        private readonly string _model;

        public Recorder(string model)
        {
            _model = model;
            _listener.InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == TelemetryNames.Source)
                {
                    listener.EnableMeasurementEvents(instrument, this);
                }
            };
            _listener.SetMeasurementEventCallback<long>((i, v, tags, state) => ((Recorder)state!).Add(i, v, tags));
            _listener.SetMeasurementEventCallback<int>((i, v, tags, state) => ((Recorder)state!).Add(i, v, tags));
            _listener.SetMeasurementEventCallback<double>((i, v, tags, state) => ((Recorder)state!).Add(i, v, tags));
            _listener.Start();
        }

        public ConcurrentDictionary<string, double> Sums { get; } = new();

        public ConcurrentDictionary<string, int> Counts { get; } = new();

        public void Observe() => _listener.RecordObservableInstruments();

        private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            string key = instrument.Name;
            bool isOurs = false;
            foreach (var (name, tag) in tags)
            {
                isOurs |= name == TelemetryNames.RequestModel && (string?)tag == _model;
                key += name == TelemetryNames.RequestModel ? "" : $"|{tag}";
            }

            if (isOurs)
            {
                Sums.AddOrUpdate(key, value, (_, sum) => sum + value);
                Counts.AddOrUpdate(key, 1, (_, count) => count + 1);
            }
        }

        public void Dispose() => _listener.Dispose();
    }

    [Fact]
    public async Task EngineRecordsTokensStepsAndFinishReasons()
    {
        string model = "engine-telemetry-" + Guid.NewGuid().ToString("N");
        using var recorder = new Recorder(model);
        using var telemetry = new ServingTelemetry(sparseIsa: "portable");
        var options = new EngineOptions { PrefixCaching = false, KvCacheBytes = 1 << 24 };
        using var engine = new Engine(fixture.PagedModel, options, telemetry: telemetry.ForEngine(model));
        telemetry.Track(model, engine);

        var request = new GenerationRequest { PromptIds = [2, 40, 41, 42], MaxTokens = 6, Sampling = SamplingParams.Greedy, IgnoreEos = true };
        await foreach (GenerationEvent e in engine.TrySubmit([request])![0].Events.ReadAllAsync())
        {
            Assert.Null(e.Error);
        }

        recorder.Observe();
        Assert.Equal(6, recorder.Sums[TelemetryNames.GenerationTokens]);
        Assert.Equal(4, recorder.Sums[TelemetryNames.PromptTokens]);
        Assert.Equal(1, recorder.Sums[$"{TelemetryNames.RequestsFinished}|length"]);
        // The first token comes from prefill; the other five from five decode steps of one row.
        Assert.Equal(5, recorder.Counts[TelemetryNames.BatchSize]);
        Assert.Equal(5, recorder.Sums[TelemetryNames.BatchSize]);
        Assert.Equal(1, recorder.Counts[TelemetryNames.QueueTime]);
        Assert.Equal(1, recorder.Counts[TelemetryNames.DecodeTime]);
        Assert.Equal(0, recorder.Sums[$"{TelemetryNames.KvEvictedTokens}|none"]);
        Assert.Equal(options.KvCacheBytes, recorder.Sums[TelemetryNames.KvCapacityBytes]);
        Assert.Equal(0, recorder.Sums[TelemetryNames.RequestsRunning]);
    }

    [Fact]
    public async Task EngineCompressionsAreCountedAndBecomeEventsOnTheDecodeSpan()
    {
        string model = "compression-" + Guid.NewGuid().ToString("N");
        using var recorder = new Recorder(model);
        var decodes = new ConcurrentBag<Activity>();
        using var spans = new ActivityListener
        {
            ShouldListenTo = source => source.Name is TelemetryNames.Source or "EngineTelemetryTests",
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.DisplayName == TelemetryNames.DecodeSpan && (string?)activity.GetTagItem(TelemetryNames.RequestModel) == model)
                {
                    decodes.Add(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(spans);
        using var source = new ActivitySource("EngineTelemetryTests");
        using var telemetry = new ServingTelemetry();
        var compression = new KvCompressionOptions { Policy = "window", Budget = 20, Beta = 6 };
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false, KvCompression = compression },
            telemetry: telemetry.ForEngine(model, "window"));

        var request = new GenerationRequest { PromptIds = [2, 40, 41, 42], MaxTokens = 60, Sampling = SamplingParams.Greedy, IgnoreEos = true };
        GenerationStream stream;
        using (source.StartActivity("request"))
        {
            stream = engine.TrySubmit([request])![0];
        }

        await foreach (GenerationEvent e in stream.Events.ReadAllAsync())
        {
            Assert.Null(e.Error);
        }

        Assert.True(engine.NumKvCompressions > 3);
        Assert.Equal(engine.NumEvictedTokens, recorder.Sums[$"{TelemetryNames.KvEvictedTokens}|window"]);
        Assert.Equal(engine.NumKvCompressions, recorder.Sums[$"{TelemetryNames.KvCompressions}|window"]);
        Activity decode = Assert.Single(decodes);
        Assert.Equal(engine.NumKvCompressions, decode.Events.Count(e => e.Name == TelemetryNames.EvictionEvent));
    }

    [Fact]
    public void KvEvictionsAreCountedPerPolicy()
    {
        string model = "eviction-" + Guid.NewGuid().ToString("N");
        using var recorder = new Recorder(model);
        using var telemetry = new ServingTelemetry();
        EngineTelemetry engine = telemetry.ForEngine(model, kvPolicy: "triattention");
        engine.KvEvicted(null, "triattention", 100);
        telemetry.RecordKvEviction(model, "triattention", 28);

        Assert.Equal(128, recorder.Sums[$"{TelemetryNames.KvEvictedTokens}|triattention"]);
        Assert.Equal(2, recorder.Sums[$"{TelemetryNames.KvCompressions}|triattention"]);
    }

    [Fact]
    public async Task ListenedTelemetryAddsNoAllocationToADecodeStep()
    {
        // A listener whose callback allocates nothing itself (the Recorder's would, on the engine thread).
        var steps = new System.Runtime.CompilerServices.StrongBox<int>();
        using var listener = new MeterListener();
        listener.InstrumentPublished = (instrument, l) =>
        {
            if (instrument.Meter.Name == TelemetryNames.Source)
            {
                l.EnableMeasurementEvents(instrument, steps);
            }
        };
        listener.SetMeasurementEventCallback<int>(static (_, _, _, state) => Interlocked.Increment(ref ((System.Runtime.CompilerServices.StrongBox<int>)state!).Value));
        listener.SetMeasurementEventCallback<long>(static (_, _, _, _) => { });
        listener.SetMeasurementEventCallback<double>(static (_, _, _, _) => { });
        listener.Start();
        using var telemetry = new ServingTelemetry();
        long with = await MedianStepAllocation(telemetry.ForEngine("allocation"));
        long without = await MedianStepAllocation(EngineTelemetry.None);

        // Same engine, same tokens: only the telemetry calls differ (a few hundred bytes is the token text's varying length).
        Assert.True(Volatile.Read(ref steps.Value) > 100);
        Assert.InRange(with - without, -256, 256);
    }

    private async Task<long> MedianStepAllocation(EngineTelemetry engineTelemetry)
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false }, telemetry: engineTelemetry);
        var request = new GenerationRequest { PromptIds = [2, 40, 41, 42], MaxTokens = 300, Sampling = SamplingParams.Greedy, IgnoreEos = true };
        var perStep = new List<long>();
        int seen = 0;
        await foreach (GenerationEvent e in engine.TrySubmit([request])![0].Events.ReadAllAsync())
        {
            if (++seen % 10 == 0)
            {
                perStep.Add(engine.LastDecodeAllocatedBytes);
            }
        }

        return perStep.Order().ElementAt(perStep.Count / 2);
    }
}
