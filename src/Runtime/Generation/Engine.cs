using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Telemetry;

namespace Serving.Runtime.Generation;

/// <summary>
/// Continuous batching for one decoder model, in the stages of vLLM v1: the scheduler plans a
/// step (prompt chunks and decode tokens of many sequences, their KV blocks allocated), the
/// runner runs it as one ONNX Runtime call over the paged KV cache, the output processor
/// samples and streams. A dedicated thread runs the steps; callers submit from any thread and
/// read each sequence's events from a channel. All KV memory is the <see cref="Kv"/> manager's
/// pool, allocated once at start.
/// </summary>
public sealed class Engine : IDisposable
{
    private readonly DecoderModel _model;
    private readonly EngineOptions _options;
    private readonly ILogger _logger;
    private readonly Scheduler _scheduler;
    private readonly PagedRunner _runner;
    private readonly OutputProcessor _outputs;
    private readonly BlockCompaction _compaction;
    private readonly KvPolicies _policies;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly List<Sequence> _scratch = [];
    private long _nextId;
    private volatile bool _stopping;

    /// <param name="model">A model loaded with <see cref="DecoderLoadOptions.PagedAttention"/>.</param>
    public Engine(DecoderModel model, EngineOptions options, ILogger? logger = null, EngineTelemetry? telemetry = null)
        : this(model, options, logger, telemetry, allocatePool: null)
    {
    }

    /// <param name="allocatePool">The KV pool's memory for the given bytes; <see cref="KvPool.Allocate"/> on the model's device when null (tests pass their own).</param>
    internal Engine(DecoderModel model, EngineOptions options, ILogger? logger, EngineTelemetry? telemetry, Func<long, KvPool>? allocatePool)
    {
        _model = model;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        Telemetry = telemetry ?? EngineTelemetry.None;
        _policies = new KvPolicies(model);
        if (_policies.Validate(options.KvCompression) is { } invalid)
        {
            throw new ArgumentException($"{model.Folder}: KV compression ({invalid.Field}): {invalid.Message}", nameof(options));
        }

        Kv = new KvCacheManager(new KvLayout(model.Signature, model.Config.SlidingWindow), options.KvCacheBytes, options.BlockTokens,
            allocatePool ?? (bytes => KvPool.Allocate(model.Device, bytes)));
        try
        {
            _runner = new PagedRunner(model, Kv);
        }
        catch (ArgumentException)
        {
            Kv.Dispose();
            throw;
        }

        _compaction = new BlockCompaction(Kv);
        _scheduler = new Scheduler(Kv, options, options.PrefixCaching, RoomFor);
        _outputs = new OutputProcessor(_scheduler, new HashSet<int>(model.Generation.EosTokenIds), Telemetry, model.Config.VocabSize);
        _thread = new Thread(Run) { IsBackground = true, Name = "serving-engine" };
        _thread.Start();
    }

    public DecoderModel Model => _model;

    /// <summary>Where the engine's metrics and phase spans go (KV eviction reports through it too).</summary>
    public EngineTelemetry Telemetry { get; }

    /// <summary>The KV block pool: the budget, allocated at start; its used blocks return to 0 when no sequence runs.</summary>
    public KvCacheManager Kv { get; }

    public int NumWaiting => _scheduler.NumWaiting;

    public int NumRunning => _scheduler.NumRunning;

    /// <summary>Sequences whose blocks were taken back to make room, so far (each recomputes its cache).</summary>
    public long NumPreemptions => _scheduler.NumPreemptions;

    /// <summary>Seconds spent on constrained decoding so far (masks, masking, advancing the automata).</summary>
    public double StructuredMaskSeconds => _outputs.MaskSeconds;

    /// <summary>Tokens per KV block; prefix caching shares whole blocks.</summary>
    public int BlockTokens => Kv.BlockTokens;

    public int ContextLength => _model.Config.MaxPositionEmbeddings;

    /// <summary>Requests that may wait at once; a call of more sequences than this can never be queued.</summary>
    public int MaxQueueLength => _options.MaxQueueLength;

    /// <summary>Steps run so far (each one model call).</summary>
    internal long NumSteps { get; private set; }

    /// <summary>Compressions run so far, over every sequence.</summary>
    public long NumKvCompressions { get; private set; }

    /// <summary>Tokens evicted from the global layers' caches so far.</summary>
    public long NumEvictedTokens { get; private set; }

    /// <summary>Raised on the engine thread after each compression: the policy's name and the tokens it evicted.</summary>
    public event Action<string, int>? KvCompressed;

    /// <summary>Managed bytes the last step without prompt tokens allocated on the engine thread (tests watch the per-token path with it).</summary>
    internal long LastDecodeAllocatedBytes { get; private set; }

    /// <summary>The engine's compression, with the request's own policy and budget when it names them.</summary>
    public KvCompressionOptions CompressionOf(GenerationRequest request) =>
        request.KvPolicy is null && request.KvBudget is null ? _options.KvCompression
        : _options.KvCompression with { Policy = request.KvPolicy ?? _options.KvCompression.Policy, Budget = request.KvBudget ?? _options.KvCompression.Budget };

    /// <summary>Blocks the request's longest possible cache takes: prompt + max tokens, capped by its compression and the sliding window.</summary>
    public long BlocksNeeded(GenerationRequest request)
    {
        // Validate has bounded the sum by the context length, so it fits an int here.
        int length = checked(request.PromptIds.Count + request.MaxTokens);
        KvCompressionOptions compression = CompressionOf(request);
        int global = compression.IsEnabled ? Math.Min(length, compression.CapTokens(request.PromptIds.Count)) : length;
        // During a call a sliding layer holds the window before the chunk and the chunk (a prefill step's at most).
        int sliding = Math.Min(length, Kv.Layout.SlidingSlots + _options.MaxPrefillTokensPerStep + Kv.BlockTokens);
        int layers = Kv.Layout.Layers, slidingLayers = Kv.Layout.NumTrimmedLayers;
        return (long)(layers - slidingLayers) * Kv.BlocksFor(global) + (long)slidingLayers * Kv.BlocksFor(sliding);
    }

    /// <summary>Why <paramref name="request"/> cannot run, as (OpenAI param, message), or null.</summary>
    public (string Param, string Message)? Validate(GenerationRequest request)
    {
        if (request.PromptIds.Count == 0)
        {
            return ("prompt", "The prompt has no tokens.");
        }

        if (request.MaxTokens < 1)
        {
            return ("max_tokens", "max_tokens must be at least 1.");
        }

        // long: a max_tokens near int.MaxValue wrapped the int sum negative, passed, and then failed every later step of the model.
        if ((long)request.PromptIds.Count + request.MaxTokens > ContextLength)
        {
            return ("max_tokens", $"This model's maximum context length is {ContextLength} tokens; the prompt has {request.PromptIds.Count} "
                + $"and max_tokens asks for {request.MaxTokens} more. Shorten the prompt or lower max_tokens.");
        }

        foreach (int id in request.PromptIds)
        {
            if ((uint)id >= (uint)_model.Config.VocabSize)
            {
                return ("prompt", $"Token id {id} is outside the vocabulary (0 to {_model.Config.VocabSize - 1}).");
            }
        }

        if (_policies.Validate(CompressionOf(request)) is { } compression)
        {
            return (compression.Field == "policy" ? "kv_policy" : "kv_budget", compression.Message);
        }

        if (BlocksNeeded(request) > Kv.NumBlocks)
        {
            return ("max_tokens", $"The request needs {BlocksNeeded(request)} KV blocks of {Kv.BlockBytes} bytes, more than the server's whole pool of {Kv.NumBlocks} ({Kv.AllocatedBytes} bytes).");
        }

        return request.Sampling.Validate();
    }

    /// <summary>
    /// Queues every request (e.g. the n choices of one API call) or none. Returns null when the
    /// wait queue is full (HTTP 429).
    /// </summary>
    /// <exception cref="ArgumentException">A request fails <see cref="Validate"/>.</exception>
    public IReadOnlyList<GenerationStream>? TrySubmit(IReadOnlyList<GenerationRequest> requests)
    {
        var sequences = new Sequence[requests.Count];
        for (int i = 0; i < requests.Count; i++)
        {
            if (Validate(requests[i]) is { } error)
            {
                throw new ArgumentException(error.Message, error.Param);
            }

            sequences[i] = CreateSequence(requests[i]);
        }

        if (_stopping || !_scheduler.TryEnqueue(sequences))
        {
            return null;
        }

        _wake.Release();
        return Array.ConvertAll(sequences, sequence => new GenerationStream(sequence, Wake));
    }

    private Sequence CreateSequence(GenerationRequest request)
    {
        int[] prompt = request.PromptIds as int[] ?? [.. request.PromptIds];
        var sampler = new SequenceSampler(request.Sampling, _model.Config.VocabSize, prompt, request.DefaultSeed);
        KvCompressionOptions compression = CompressionOf(request);
        KvCompressor? compressor = compression.IsEnabled ? new KvCompressor(Kv.Layout, _policies.Get(compression.Policy), compression) : null;
        return new Sequence(Interlocked.Increment(ref _nextId), request with { PromptIds = prompt }, sampler,
            _model.Tokenizer.CreateDetokenizer(request.SkipSpecialTokens), Kv.NewSequence(), compressor)
        {
            Constraint = request.ResponseSchema is { } schema ? new Structured.JsonConstraint(Masks, schema, _model.Tokenizer.TokenBytes, request.ResponseSchemaIsOptional) : null,
        };
    }

    /// <summary>The model's token masks for constrained JSON, built on the first request that asks (its vocabulary's bytes and tries).</summary>
    private Structured.TokenMasks Masks => LazyInitializer.EnsureInitialized(ref _masks,
        () => new Structured.TokenMasks(_model.Tokenizer, _model.Config.VocabSize, _model.Generation.EosTokenIds));

    private Structured.TokenMasks? _masks;

    private void Wake() => _wake.Release();

    private void Run()
    {
        while (!_stopping)
        {
            if (!_scheduler.HasWork)
            {
                _wake.Wait();
                continue;
            }

            try
            {
                Step();
            }
            catch (Exception e)
            {
                // A failed step (an ONNX Runtime error, or a bug of ours) ends the running sequences with
                // an error event, not the process: the engine goes on with the next requests.
                _logger.LogError(e, "An engine step failed; failing the running sequences");
                FailRunning(e.Message);
            }
        }

        FailRunning("The server is shutting down.");
        _scratch.Clear();
        _scheduler.TakeCancelledWaiting(_scratch, all: true);
        foreach (Sequence sequence in _scratch)
        {
            sequence.Events.Writer.TryWrite(new GenerationEvent(GenerationEvent.NoToken, "", 0, null, FinishReason.Error, default, "The server is shutting down."));
            sequence.Events.Writer.TryComplete();
        }
    }

    /// <summary>One step: schedule, run, advance the caches, sample and stream.</summary>
    private void Step()
    {
        DropCancelled();
        long before = GC.GetAllocatedBytesForCurrentThread();
        StepPlan plan = _scheduler.Schedule();
        if (plan.IsEmpty)
        {
            _wake.Wait(10);  // nothing fits yet (the queue's head waits for blocks a cancel will free)
            return;
        }

        NumSteps++;
        ReadOnlySpan<float> logits = _runner.Run(plan);
        _scheduler.Advance(plan);
        _outputs.Process(plan, logits);
        if (plan.NumTokens == plan.Chunks.Count)
        {
            LastDecodeAllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - before;
        }
    }

    /// <summary>
    /// Room a sequence's global layers have before their cap; a cache at its cap is compressed
    /// first. −1 when compressing needs free blocks the pool lacks (the scheduler preempts).
    /// </summary>
    private int RoomFor(Sequence sequence)
    {
        if (sequence.Compressor is null || sequence.CacheRoom > 0)
        {
            return sequence.Compressor is null ? int.MaxValue : sequence.CacheRoom;
        }

        if (!_compaction.TryCompress(sequence, out int evicted))
        {
            return -1;
        }

        NumKvCompressions++;
        NumEvictedTokens += evicted;
        string policy = sequence.Compressor.Policy.Name;
        KvCompressed?.Invoke(policy, evicted);
        Telemetry.KvEvicted(sequence.Trace, policy, evicted);
        return sequence.CacheRoom;
    }

    private void DropCancelled()
    {
        _scratch.Clear();
        _scheduler.TakeCancelledWaiting(_scratch);
        foreach (Sequence sequence in _scratch)
        {
            sequence.Status = SequenceStatus.Finished;
            Telemetry.Finished(sequence, FinishReason.Cancelled);
            sequence.Events.Writer.TryComplete();
        }

        for (int i = _scheduler.Running.Count - 1; i >= 0; i--)
        {
            if (_scheduler.Running[i].IsCancelled)
            {
                _outputs.Finish(_scheduler.Running[i], FinishReason.Cancelled);
            }
        }
    }

    private void FailRunning(string message)
    {
        for (int i = _scheduler.Running.Count - 1; i >= 0; i--)
        {
            _outputs.Finish(_scheduler.Running[i], FinishReason.Error, error: message);
        }
    }

    /// <summary>Stops the step thread, failing what runs. The wake semaphore is left undisposed, so a late Cancel is harmless.</summary>
    public void Dispose()
    {
        if (_stopping)
        {
            return;
        }

        _stopping = true;
        _wake.Release();
        _thread.Join();
        _runner.Dispose();
        _compaction.Dispose();
        Kv.Dispose();
    }
}
