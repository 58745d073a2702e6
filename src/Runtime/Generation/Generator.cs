using System.Diagnostics;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

/// <param name="KvCompression">How the cache is compressed (null or <c>none</c>: every token is kept).</param>
/// <param name="ResponseSchema">Constrains the output to JSON of this schema (the serving engine's path, <see cref="BatchOfOne"/>).</param>
public sealed record GenerateOptions(int MaxTokens, double Temperature = 0, int? Seed = null, bool StopAtEos = true, KvCompressionOptions? KvCompression = null,
    Structured.SchemaNode? ResponseSchema = null);

/// <param name="FinishReason"><c>stop</c> (an EOS id) or <c>length</c> (max tokens).</param>
/// <param name="KvTokensPeak">The most tokens any global-attention layer's cache held.</param>
/// <param name="KvBytesPeak">The most bytes the caches of every layer held together.</param>
/// <param name="StructuredMaskMs">Time spent constraining the output to JSON (0 without a schema).</param>
public sealed record GenerationResult(IReadOnlyList<int> TokenIds, string FinishReason, double PrefillMs, double DecodeTokensPerSecond,
    int KvTokensPeak = 0, long KvBytesPeak = 0, int EvictedTokens = 0, double StructuredMaskMs = 0);

/// <summary>
/// Generates one sequence with a <see cref="SequenceStepper"/>: the prompt, then one call per
/// token, sampling from each call's logits.
/// </summary>
public sealed class Generator(DecoderModel model)
{
    public GenerationResult Generate(IReadOnlyList<int> promptIds, GenerateOptions options, Action<int>? onToken = null)
    {
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        }

        int context = model.Config.MaxPositionEmbeddings;
        if (options.MaxTokens < 1 || (long)promptIds.Count + options.MaxTokens > context)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxTokens,
                $"max tokens must be at least 1 and, with the {promptIds.Count}-token prompt, within the context length {context}");
        }

        // The engine's sampler: the same seed and temperature give the CLI the tokens the server gives.
        int[] prompt = promptIds as int[] ?? [.. promptIds];
        var sampler = new SequenceSampler(new SamplingParams { Temperature = options.Temperature, Seed = options.Seed }, model.Config.VocabSize, prompt,
            defaultSeed: Random.Shared.NextInt64());
        using var stepper = new SequenceStepper(model, options.KvCompression);
        var generated = new List<int>(options.MaxTokens);
        var clock = Stopwatch.StartNew();
        stepper.Prefill(promptIds);
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        string finish = "length";
        clock.Restart();
        while (true)
        {
            int token = sampler.Sample(stepper.Logits);
            generated.Add(token);
            onToken?.Invoke(token);
            if (options.StopAtEos && model.Generation.EosTokenIds.Contains(token))
            {
                finish = "stop";
                break;
            }

            if (generated.Count == options.MaxTokens)
            {
                break;
            }

            stepper.Step(token);
        }

        double decodeSeconds = clock.Elapsed.TotalSeconds;
        double tokensPerSecond = generated.Count > 1 && decodeSeconds > 0 ? (generated.Count - 1) / decodeSeconds : 0;
        return new GenerationResult(generated, finish, prefillMs, tokensPerSecond, stepper.KvTokensPeak, stepper.KvBytesPeak, stepper.NumEvictedTokens);
    }
}
