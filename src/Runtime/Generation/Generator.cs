using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

public sealed record GenerateOptions(int MaxTokens, double Temperature = 0, int? Seed = null, bool StopAtEos = true);

/// <param name="FinishReason"><c>stop</c> (an EOS id) or <c>length</c> (max tokens).</param>
public sealed record GenerationResult(IReadOnlyList<int> TokenIds, string FinishReason, double PrefillMs, double DecodeTokensPerSecond);

/// <summary>
/// Generates one sequence: a prefill call for the prompt, then one call per token with the
/// previous call's present caches as past. Positions are true positions from 0.
/// </summary>
public sealed class Generator(DecoderModel model)
{
    private readonly ModelRunner _runner = new(model);

    public GenerationResult Generate(IReadOnlyList<int> promptIds, GenerateOptions options, Action<int>? onToken = null)
    {
        if (promptIds.Count == 0)
        {
            throw new ArgumentException("the prompt has no tokens", nameof(promptIds));
        }

        var sampler = new Sampler(options.Temperature, options.Seed);
        var generated = new List<int>(options.MaxTokens);
        var clock = Stopwatch.StartNew();
        DecoderOutputs outputs = Prefill(promptIds);
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        string finish = "length";
        clock.Restart();
        try
        {
            while (generated.Count < options.MaxTokens)
            {
                int token = sampler.Sample(outputs.Logits(0, outputs.LogitPositions - 1));
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

                DecoderOutputs next = Step(outputs, token, promptIds.Count + generated.Count - 1);
                outputs.Dispose();
                outputs = next;
            }
        }
        finally
        {
            outputs.Dispose();
        }

        double decodeSeconds = clock.Elapsed.TotalSeconds;
        double tokensPerSecond = generated.Count > 1 && decodeSeconds > 0 ? (generated.Count - 1) / decodeSeconds : 0;
        return new GenerationResult(generated, finish, prefillMs, tokensPerSecond);
    }

    private DecoderOutputs Prefill(IReadOnlyList<int> promptIds)
    {
        int count = promptIds.Count;
        var past = Enumerable.Range(0, model.Signature.Layers.Count).Select(_ => _runner.EmptyPast(1)).ToArray();
        var pastValues = Enumerable.Range(0, model.Signature.Layers.Count).Select(_ => _runner.EmptyPast(1)).ToArray();
        try
        {
            var batch = new DecoderBatch(1, count,
                [.. promptIds.Select(id => (long)id)],
                [.. Enumerable.Repeat(1L, count)],
                [.. Enumerable.Range(0, count).Select(i => (long)i)],
                past, pastValues) { LastLogitsOnly = true };
            return _runner.Run(batch);
        }
        finally
        {
            foreach (OrtValue value in past.Concat(pastValues))
            {
                value.Dispose();
            }
        }
    }

    /// <summary>One token at <paramref name="position"/>; the global cache holds every earlier token.</summary>
    private DecoderOutputs Step(DecoderOutputs previous, int token, int position)
    {
        var batch = new DecoderBatch(1, 1, [token], [.. Enumerable.Repeat(1L, position + 1)], [position],
            previous.PresentKeys, previous.PresentValues) { LastLogitsOnly = true };
        return _runner.Run(batch);
    }
}
