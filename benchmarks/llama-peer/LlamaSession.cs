using System.Diagnostics;
using LLama;
using LLama.Common;
using LLama.Native;

namespace Serving.LlamaPeer;

/// <summary>
/// One llama.cpp model and context on the CPU, driven token by token through llama_decode
/// (no sampler chain: greedy is an argmax over the last row of logits, as ours is).
/// </summary>
public sealed class LlamaSession : IDisposable
{
    private readonly LLamaWeights _weights;
    private readonly LLamaContext _context;
    private readonly LLamaBatch _batch = new();

    public double LoadMs { get; }

    public int VocabSize { get; }

    private LlamaSession(LLamaWeights weights, LLamaContext context, double loadMs)
    {
        (_weights, _context, LoadMs) = (weights, context, loadMs);
        VocabSize = weights.NativeHandle.Vocab.Count;
    }

    /// <summary>Loads <paramref name="gguf"/>; <paramref name="contextTokens"/> bounds prompt + generated tokens.</summary>
    public static LlamaSession Open(string gguf, int threads, int contextTokens)
    {
        uint batch = (uint)Math.Max(512, contextTokens);
        var parameters = new ModelParams(gguf)
        {
            ContextSize = (uint)contextTokens,
            BatchSize = batch,
            UBatchSize = batch,
            Threads = threads,
            BatchThreads = threads,
            GpuLayerCount = 0,
        };
        var clock = Stopwatch.StartNew();
        var weights = LLamaWeights.LoadFromFile(parameters);
        var context = weights.CreateContext(parameters);
        return new LlamaSession(weights, context, clock.Elapsed.TotalMilliseconds);
    }

    public int[] Tokenize(string text, bool addBos) =>
        [.. _context.Tokenize(text, addBos, special: false).Select(t => (int)t)];

    public void Reset() => _context.NativeHandle.MemoryClear(true);

    /// <summary>Feeds <paramref name="tokens"/> from position <paramref name="start"/>; returns the greedy next token.</summary>
    public int Feed(ReadOnlySpan<int> tokens, int start)
    {
        _batch.Clear();
        for (int i = 0; i < tokens.Length; i++)
        {
            _batch.Add(tokens[i], start + i, LLamaSeqId.Zero, i == tokens.Length - 1);
        }

        DecodeResult result = _context.NativeHandle.Decode(_batch);
        if (result != DecodeResult.Ok)
        {
            throw new InvalidOperationException($"llama_decode failed: {result}");
        }

        return ArgMax(_context.NativeHandle.GetLogitsIth(_batch.TokenCount - 1));
    }

    /// <summary>Σ −log p(target) over one window fed from position 0 with logits at every position (the cache cleared first).</summary>
    public double WindowLoss(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets)
    {
        Reset();
        _batch.Clear();
        for (int i = 0; i < inputs.Length; i++)
        {
            _batch.Add(inputs[i], i, LLamaSeqId.Zero, true);
        }

        DecodeResult result = _context.NativeHandle.Decode(_batch);
        if (result != DecodeResult.Ok)
        {
            throw new InvalidOperationException($"llama_decode failed: {result}");
        }

        double sum = 0;
        for (int s = 0; s < targets.Length; s++)
        {
            sum += Serving.Trainer.Evaluation.OnnxPerplexity.NegativeLogLikelihood(_context.NativeHandle.GetLogitsIth(s), targets[s]);
        }

        return sum;
    }

    /// <summary>Lowest id among equal maxima, as our sampler's argmax.</summary>
    private static int ArgMax(Span<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    public void Dispose()
    {
        _context.Dispose();
        _weights.Dispose();
    }
}
