using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Telemetry;

namespace Serving.Runtime.Generation;

/// <summary>
/// Continuous batching for one decoder model. A dedicated thread runs steps: drop cancelled
/// sequences, admit waiting ones while the KV pool has room, prefill admitted prompts (in
/// chunks, reusing cached prefixes), then decode every running sequence in one ONNX Runtime
/// call. Requests join and leave at step boundaries. Callers submit from any thread and
/// read each sequence's events from a channel.
/// </summary>
public sealed partial class Engine : IDisposable
{
    private readonly DecoderModel _model;
    private readonly EngineOptions _options;
    private readonly ILogger _logger;
    private readonly KvLayout _layout;
    private readonly Scheduler _scheduler;
    private readonly ModelRunner _runner;
    private readonly PrefixCache? _prefixCache;
    private readonly SemaphoreSlim _wake = new(0);
    private readonly Thread _thread;
    private readonly HashSet<int> _eosIds;
    private readonly List<Sequence> _scratch = [];
    private readonly EngineTelemetry _telemetry;
    private long _nextId;
    private volatile bool _stopping;

    public Engine(DecoderModel model, EngineOptions options, ILogger? logger = null, EngineTelemetry? telemetry = null)
    {
        if (!model.Signature.SupportsKvCompression)
        {
            throw new NotSupportedException(
                $"{model.OnnxPath}: the engine batches sequences of different lengths, which needs the attention_mask and position_ids inputs this graph lacks");
        }

        _model = model;
        _options = options;
        _logger = logger ?? NullLogger.Instance;
        _telemetry = telemetry ?? EngineTelemetry.None;
        _layout = new KvLayout(model.Signature, model.Config.SlidingWindow);
        Pool = new KvCachePool(options.KvCacheBytes);
        _scheduler = new Scheduler(Pool, options.MaxQueueLength, options.MaxBatchSize);
        _runner = new ModelRunner(model);
        _eosIds = [.. model.Generation.EosTokenIds];
        _policies = new KvPolicies(model);
        if (ValidateCompression(options.KvCompression) is { } invalid)
        {
            throw new ArgumentException($"{model.Folder}: KV compression ({invalid.Field}): {invalid.Message}", nameof(options));
        }

        BlockTokens = _layout.NumTrimmedLayers > 0 ? Math.Min(options.PrefixBlockTokens, _layout.SlidingSlots) : options.PrefixBlockTokens;
        ChunkTokens = PrefillChunk(options.MaxPrefillTokensPerStep);
        _prefixCache = options.PrefixCacheBytes > 0 ? new PrefixCache(_layout, BlockTokens, options.PrefixCacheBytes) : null;
        _decode = new DecodeState(_layout, model.Config.VocabSize);
        _prefill = new PrefillState(Math.Max(ChunkTokens, options.MaxPrefillTokensPerStep), model.Config.MaxPositionEmbeddings);
        _thread = new Thread(Run) { IsBackground = true, Name = "serving-engine" };
        _thread.Start();
    }

    public DecoderModel Model => _model;

    /// <summary>Where the engine's metrics and phase spans go (KV eviction reports through it too).</summary>
    public EngineTelemetry Telemetry => _telemetry;

    /// <summary>The KV byte budget; its used bytes return to 0 when no sequence runs.</summary>
    public KvCachePool Pool { get; }

    public int NumWaiting => _scheduler.NumWaiting;

    public int NumRunning => _scheduler.NumRunning;

    /// <summary>Native bytes of the decode batch's cache buffers (padding and the second buffer included).</summary>
    public long BatchCacheBytes => _decode.Kv.AllocatedBytes;

    /// <summary>Tokens per prefix-cache block; prefill chunks are whole multiples of it.</summary>
    public int BlockTokens { get; }

    /// <summary>
    /// Prompt tokens per prefill call. With sliding layers a chunk stays under the window, so
    /// the trimmed present still holds every new token's keys for the prefix cache.
    /// </summary>
    public int ChunkTokens { get; }

    public int ContextLength => _model.Config.MaxPositionEmbeddings;

    /// <summary>KV bytes a request reserves: its longest possible sequence.</summary>
    public long ReservationBytes(GenerationRequest request)
    {
        // Validate has bounded the sum by the context length, so it fits an int here.
        int length = checked(request.PromptIds.Count + request.MaxTokens);
        KvCompressionOptions compression = CompressionOf(request);
        return _layout.SequenceBytes(length, compression.IsEnabled ? Math.Min(length, compression.CapTokens(request.PromptIds.Count)) : length);
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

        // long: a max_tokens near int.MaxValue wrapped the int sum negative, passed, and then failed every step of the model.
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

        if (ValidateCompression(CompressionOf(request)) is { } compression)
        {
            return (compression.Field == "policy" ? "kv_policy" : "kv_budget", compression.Message);
        }

        if (!Pool.CanEverFit(ReservationBytes(request)))
        {
            return ("max_tokens", $"The request needs {ReservationBytes(request)} bytes of KV cache, more than the server's whole budget of {Pool.CapacityBytes}.");
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
        return new Sequence(Interlocked.Increment(ref _nextId), request with { PromptIds = prompt }, sampler,
            _model.Tokenizer.CreateDetokenizer(request.SkipSpecialTokens), ReservationBytes(request), CreateCompressor(request));
    }

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

    /// <summary>Managed bytes the last decode step allocated on the engine thread (tests watch the per-token path with it).</summary>
    internal long LastDecodeAllocatedBytes { get; private set; }

    /// <summary>One step of the loop in DESIGN.md.</summary>
    private void Step()
    {
        DropCancelled();
        _scheduler.Admit();
        Prefill();
        long before = GC.GetAllocatedBytesForCurrentThread();
        Decode();
        LastDecodeAllocatedBytes = GC.GetAllocatedBytesForCurrentThread() - before;
    }

    private void DropCancelled()
    {
        _scratch.Clear();
        _scheduler.TakeCancelledWaiting(_scratch);
        foreach (Sequence sequence in _scratch)
        {
            sequence.Status = SequenceStatus.Finished;
            _telemetry.Finished(sequence, FinishReason.Cancelled);
            sequence.Events.Writer.TryComplete();
        }

        RemoveCancelled(_scheduler.Prefilling);
        if (RemoveCancelled(_scheduler.Decoding))
        {
            _decode.RowsChanged = true;
        }
    }

    private bool RemoveCancelled(List<Sequence> sequences)
    {
        bool removed = false;
        for (int i = sequences.Count - 1; i >= 0; i--)
        {
            if (sequences[i].IsCancelled)
            {
                Finish(sequences[i], FinishReason.Cancelled, "", NoLogprob);
                removed = true;
            }
        }

        return removed;
    }

    private static readonly (float Logprob, TokenLogprob[]? Top) NoLogprob = (0, null);

    /// <summary>Ends a running sequence: its last event, its KV reservation back to the pool.</summary>
    private void Finish(Sequence sequence, FinishReason reason, string text, (float Logprob, TokenLogprob[]? Top) logprob,
        int token = GenerationEvent.NoToken, string? error = null)
    {
        if (sequence.Status == SequenceStatus.Decoding)
        {
            _scheduler.Decoding.Remove(sequence);
            _decode.RowsChanged = true;
        }
        else
        {
            _scheduler.Prefilling.Remove(sequence);
        }

        sequence.Status = SequenceStatus.Finished;
        sequence.ReleasePrefill();
        Pool.Release(sequence.ReservedBytes);
        _telemetry.Finished(sequence, reason);
        sequence.Events.Writer.TryWrite(new GenerationEvent(token, text, logprob.Logprob, logprob.Top, reason, sequence.Usage, error));
        sequence.Events.Writer.TryComplete();
    }

    private void FailRunning(string message)
    {
        foreach (List<Sequence> list in (List<Sequence>[])[_scheduler.Prefilling, _scheduler.Decoding])
        {
            for (int i = list.Count - 1; i >= 0; i--)
            {
                Sequence sequence = list[i];
                Finish(sequence, FinishReason.Error, "", NoLogprob, error: message);
            }
        }

        _decode.Kv.Clear();
        _decode.RowsChanged = true;
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
        _decode.Dispose();
        _prefixCache?.Dispose();
    }
}
