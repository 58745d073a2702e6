using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Trainer.Training;

namespace Serving.Trainer.Evaluation;

/// <summary>Mean next-token loss and perplexity of a text under a model, and how many tokens were scored.</summary>
public readonly record struct PerplexityResult(double Loss, long Tokens, int Windows)
{
    public double Perplexity => Math.Exp(Loss);
}

/// <summary>
/// Perplexity of a model folder through ONNX Runtime: the text in consecutive windows of S + 1
/// tokens, each scored from an empty cache (the same windows as <see cref="ModelTrainer.Evaluate"/>),
/// so the figure is what the served model does, not what the trainer believes it does.
/// </summary>
public static class OnnxPerplexity
{
    public static PerplexityResult Evaluate(DecoderModel model, int[] tokens, int sequenceLength, int maxWindows = int.MaxValue)
    {
        using var runner = new ModelRunner(model);
        double total = 0;
        long count = 0;
        int windows = 0;
        foreach ((int[] inputs, int[] targets) in TokenBatcher.Windows(tokens, sequenceLength).Take(maxWindows))
        {
            total += WindowLoss(model, runner, inputs, targets);
            count += targets.Length;
            windows++;
        }

        return windows == 0
            ? throw new ArgumentException($"the text has {tokens.Length} tokens; one window of {sequenceLength} needs more")
            : new PerplexityResult(total / count, count, windows);
    }

    /// <summary>Σ −log p(target) over one window.</summary>
    private static double WindowLoss(DecoderModel model, ModelRunner runner, int[] inputs, int[] targets)
    {
        int layers = model.Signature.Layers.Count;
        OrtValue[] keys = [.. Enumerable.Range(0, layers).Select(_ => runner.EmptyPast(1))];
        OrtValue[] values = [.. Enumerable.Range(0, layers).Select(_ => runner.EmptyPast(1))];
        try
        {
            long[] ids = [.. inputs.Select(t => (long)t)];
            long[] mask = [.. inputs.Select(_ => 1L)];
            long[] positions = [.. Enumerable.Range(0, inputs.Length).Select(p => (long)p)];
            using DecoderOutputs outputs = runner.Run(new DecoderBatch(1, inputs.Length, ids, mask, positions, keys, values));
            double sum = 0;
            for (int s = 0; s < targets.Length; s++)
            {
                sum += NegativeLogLikelihood(outputs.Logits(0, s), targets[s]);
            }

            return sum;
        }
        finally
        {
            foreach (OrtValue value in keys.Concat(values))
            {
                value.Dispose();
            }
        }
    }

    /// <summary>−log softmax(logits)[target], in double (also what the llama.cpp peer scores with).</summary>
    public static double NegativeLogLikelihood(ReadOnlySpan<float> logits, int target)
    {
        float max = float.NegativeInfinity;
        foreach (float value in logits)
        {
            max = MathF.Max(max, value);
        }

        double sum = 0;
        foreach (float value in logits)
        {
            sum += Math.Exp(value - max);
        }

        return max + Math.Log(sum) - logits[target];
    }
}
