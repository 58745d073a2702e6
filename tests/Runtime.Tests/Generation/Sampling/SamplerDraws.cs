using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

/// <summary>Helpers that draw many tokens from fixed logits and build logits from probabilities.</summary>
internal static class SamplerDraws
{
    /// <summary>The next token through the logprob-computing overload (the one most tests check).</summary>
    public static int Next(this SequenceSampler sampler, float[] logits) =>
        sampler.Sample(logits, out _, [], out _);

    /// <summary>How often each token was drawn in <paramref name="draws"/> samples.</summary>
    public static int[] Counts(SamplingParams parameters, float[] logits, int draws, long seed = 7)
    {
        SequenceSampler sampler = new(parameters, logits.Length, [], seed);
        int[] counts = new int[logits.Length];
        for (int i = 0; i < draws; i++)
        {
            counts[sampler.Next(logits)]++;
        }

        return counts;
    }

    /// <summary>The ids drawn at least once, ascending.</summary>
    public static int[] DrawnIds(SamplingParams parameters, float[] logits, int draws = 4000)
    {
        int[] counts = Counts(parameters, logits, draws);
        List<int> ids = [];
        for (int id = 0; id < counts.Length; id++)
        {
            if (counts[id] > 0)
            {
                ids.Add(id);
            }
        }

        return [.. ids];
    }

    /// <summary>Logits whose softmax is <paramref name="probabilities"/> (shifted by a constant to show it does not matter).</summary>
    public static float[] FromProbabilities(params double[] probabilities) =>
        [.. probabilities.Select(p => (float)(Math.Log(p) + 3.5))];

    public static double[] LogSoftmax(float[] logits)
    {
        double max = logits.Max();
        double logSum = Math.Log(logits.Sum(x => Math.Exp(x - max)));
        return [.. logits.Select(x => x - max - logSum)];
    }

    public static float[] Gaussian(int count, double scale, int seed)
    {
        Random random = new(seed);
        float[] logits = new float[count];
        for (int i = 0; i < count; i++)
        {
            double normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            logits[i] = (float)(normal * scale);
        }

        return logits;
    }
}
