using System.Diagnostics;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

/// <summary>
/// One sequence through the serving engine's own stages (scheduler, paged runner, output
/// processor, sampler), as `serving generate` runs it: the CLI and the server run the same code
/// and give the same tokens for the same seed. <see cref="Generator"/> stays the exported
/// graph's single-sequence loop, the reference the engine is tested against.
/// </summary>
public static class BatchOfOne
{
    /// <param name="model">A model loaded with <see cref="DecoderLoadOptions.PagedAttention"/>.</param>
    /// <exception cref="ArgumentException">The compression options do not suit this model (param <c>compression</c>).</exception>
    public static GenerationResult Generate(DecoderModel model, IReadOnlyList<int> promptIds, GenerateOptions options, Action<int>? onToken = null)
    {
        using Engine engine = CreateEngine(model, promptIds.Count + options.MaxTokens, options.KvCompression);
        return Generate(engine, promptIds, options, onToken);
    }

    /// <summary>
    /// A one-sequence engine whose pool holds <paramref name="length"/> tokens; reused across
    /// <see cref="Generate(Engine, IReadOnlyList{int}, GenerateOptions, Action{int}?)"/> calls it keeps its
    /// pool and buffers warm, as a server's engine is after its first requests (benchmarks/llama-peer's <c>ours</c>).
    /// </summary>
    /// <exception cref="ArgumentException">The compression options do not suit this model (param <c>compression</c>).</exception>
    public static Engine CreateEngine(DecoderModel model, int length, KvCompressionOptions? compression = null)
    {
        try
        {
            return new Engine(model, new EngineOptions
            {
                KvCacheBytes = PoolBytes(model, length),
                MaxBatchSize = 1,
                PrefixCaching = false,
                KvCompression = compression ?? new KvCompressionOptions(),
            });
        }
        catch (ArgumentException e) when (e.ParamName == "options")
        {
            throw new ArgumentException(e.Message, "compression", e);
        }
    }

    /// <summary>One sequence through <paramref name="engine"/> (its compression, not <paramref name="options"/>'s, applies).</summary>
    public static GenerationResult Generate(Engine engine, IReadOnlyList<int> promptIds, GenerateOptions options, Action<int>? onToken = null)
    {
        var request = new GenerationRequest
        {
            PromptIds = promptIds as int[] ?? [.. promptIds],
            MaxTokens = options.MaxTokens,
            Sampling = new SamplingParams { Temperature = options.Temperature, Seed = options.Seed },
            IgnoreEos = !options.StopAtEos,
            DefaultSeed = Random.Shared.NextInt64(),
            ResponseSchema = options.ResponseSchema,
        };
        return Read(engine, engine.TrySubmit([request])![0], onToken);
    }

    private static GenerationResult Read(Engine engine, GenerationStream stream, Action<int>? onToken)
    {
        var clock = Stopwatch.StartNew();
        var tokens = new List<int>();
        double prefillMs = 0, decodeSeconds = 0;
        while (stream.Events.WaitToReadAsync().AsTask().GetAwaiter().GetResult())
        {
            while (stream.Events.TryRead(out GenerationEvent e))
            {
                if (e.HasToken)
                {
                    tokens.Add(e.TokenId);
                    onToken?.Invoke(e.TokenId);
                    prefillMs = tokens.Count == 1 ? clock.Elapsed.TotalMilliseconds : prefillMs;
                    decodeSeconds = (clock.Elapsed.TotalMilliseconds - prefillMs) / 1000;
                }

                if (e.Finish is { } finish)
                {
                    if (finish == FinishReason.Error)
                    {
                        throw new InvalidOperationException(e.Error);
                    }

                    double tokensPerSecond = tokens.Count > 1 && decodeSeconds > 0 ? (tokens.Count - 1) / decodeSeconds : 0;
                    return new GenerationResult(tokens, finish == FinishReason.Stop ? "stop" : "length", prefillMs, tokensPerSecond,
                        e.Usage.KvTokensPeak, engine.Kv.PeakUsedBlocks * engine.Kv.BlockBytes, e.Usage.EvictedTokens, engine.StructuredMaskSeconds * 1000);
                }
            }
        }

        throw new InvalidOperationException("the engine ended the sequence without a finish event");
    }

    /// <summary>
    /// A pool that holds the sequence even if every layer kept every token (plus a prefill chunk):
    /// only the blocks it writes are ever touched, so the rest stays untouched virtual memory.
    /// </summary>
    private static long PoolBytes(DecoderModel model, int length)
    {
        var layout = new KvLayout(model.Signature, model.Config.SlidingWindow);
        var defaults = new EngineOptions();
        long blockBytes = 2L * layout.SlotBytes * defaults.BlockTokens;
        int blocks = (length + defaults.MaxPrefillTokensPerStep + 2 * defaults.BlockTokens) / defaults.BlockTokens;
        return layout.Layers * (long)blocks * blockBytes;
    }
}
