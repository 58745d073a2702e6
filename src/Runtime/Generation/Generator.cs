using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

public sealed record GenerateOptions(int MaxTokens, double Temperature = 0, int? Seed = null, bool StopAtEos = true);

/// <param name="FinishReason"><c>stop</c> (an EOS id) or <c>length</c> (max tokens).</param>
public sealed record GenerationResult(IReadOnlyList<int> TokenIds, string FinishReason, double PrefillMs, double DecodeTokensPerSecond);

/// <summary>
/// Generates one sequence: a prefill call for the prompt, then one call per token with the
/// previous call's present caches as past. Positions are true positions from 0. Buffers for
/// the whole generation are made up front; each step passes slices of them.
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
        if (options.MaxTokens < 1 || promptIds.Count + options.MaxTokens > context)
        {
            throw new ArgumentOutOfRangeException(nameof(options), options.MaxTokens,
                $"max tokens must be at least 1 and, with the {promptIds.Count}-token prompt, within the context length {context}");
        }

        var sampler = new Sampler(options.Temperature, options.Seed);
        using var runner = new ModelRunner(model);
        var buffers = new StepBuffers(promptIds, options.MaxTokens);
        var generated = new List<int>(options.MaxTokens);
        var clock = Stopwatch.StartNew();
        DecoderOutputs outputs = Prefill(runner, buffers, promptIds.Count);
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        string finish = "length";
        clock.Restart();
        try
        {
            while (true)
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

                DecoderOutputs next = Step(runner, buffers, outputs, token, promptIds.Count + generated.Count - 1);
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

    private DecoderOutputs Prefill(ModelRunner runner, StepBuffers buffers, int count)
    {
        int layers = model.Signature.Layers.Count;
        var empty = new OrtValue[2 * layers];
        for (int i = 0; i < empty.Length; i++)
        {
            empty[i] = runner.EmptyPast(1);
        }

        try
        {
            return runner.Run(new DecoderBatch(1, count, buffers.Tokens[..count], buffers.Ones[..count], buffers.Positions[..count],
                empty[..layers], empty[layers..]) { LastLogitsOnly = true });
        }
        finally
        {
            foreach (OrtValue value in empty)
            {
                value.Dispose();
            }
        }
    }

    /// <summary>One token at <paramref name="position"/>; the global cache holds every earlier token.</summary>
    private static DecoderOutputs Step(ModelRunner runner, StepBuffers buffers, DecoderOutputs previous, int token, int position)
    {
        buffers.Tokens.Span[0] = token;
        return runner.Run(new DecoderBatch(1, 1, buffers.Tokens[..1], buffers.Ones[..(position + 1)], buffers.Positions.Slice(position, 1),
            previous.PresentKeys, previous.PresentValues) { LastLogitsOnly = true });
    }

    /// <summary>Token ids, an all-ones mask and 0, 1, 2, … positions, sized for the longest step.</summary>
    private sealed class StepBuffers
    {
        public StepBuffers(IReadOnlyList<int> promptIds, int maxTokens)
        {
            int length = promptIds.Count + maxTokens;
            Tokens = new long[promptIds.Count];
            for (int i = 0; i < promptIds.Count; i++)
            {
                Tokens.Span[i] = promptIds[i];
            }

            long[] ones = new long[length], positions = new long[length];
            Array.Fill(ones, 1L);
            for (int i = 0; i < length; i++)
            {
                positions[i] = i;
            }

            (Ones, Positions) = (ones, positions);
        }

        public Memory<long> Tokens { get; }
        public Memory<long> Ones { get; }
        public Memory<long> Positions { get; }
    }
}
