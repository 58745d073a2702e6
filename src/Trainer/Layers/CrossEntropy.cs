namespace Serving.Trainer.Layers;

/// <summary>Mean next-token cross-entropy over rows of logits, and its gradient.</summary>
internal static class CrossEntropy
{
    /// <summary>
    /// Returns mean(−log softmax(logits)[target]) and, when <paramref name="dLogits"/> is not
    /// empty, writes (softmax − onehot) / rows into it (it may alias <paramref name="logits"/>).
    /// </summary>
    public static double Forward(ReadOnlySpan<float> logits, ReadOnlySpan<int> targets, int vocab, Span<float> dLogits)
    {
        double total = 0;
        float inverseRows = 1f / targets.Length;
        for (int t = 0; t < targets.Length; t++)
        {
            ReadOnlySpan<float> row = logits.Slice(t * vocab, vocab);
            float max = float.NegativeInfinity;
            foreach (float value in row)
            {
                max = MathF.Max(max, value);
            }

            double sum = 0;
            foreach (float value in row)
            {
                sum += Math.Exp(value - max);
            }

            double logSum = max + Math.Log(sum);
            total += logSum - row[targets[t]];
            if (!dLogits.IsEmpty)
            {
                Span<float> grad = dLogits.Slice(t * vocab, vocab);
                for (int v = 0; v < vocab; v++)
                {
                    grad[v] = (float)Math.Exp(row[v] - logSum) * inverseRows;
                }

                grad[targets[t]] -= inverseRows;
            }
        }

        return total / targets.Length;
    }
}
