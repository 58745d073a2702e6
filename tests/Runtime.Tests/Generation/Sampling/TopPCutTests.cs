using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class TopPCutTests
{
    [Theory]
    [InlineData(0.1, 1)]
    [InlineData(0.5, 2)]
    [InlineData(0.9, 3)]
    [InlineData(0.999, 4)]
    [InlineData(1.0, 5)]
    public void Find_KeepsWhatAFullSortWould(double p, int seed)
    {
        Random random = new(seed);
        // Few distinct values (ties at the cut) and some exact zeros, like underflowed exps.
        float[] weights = [.. Enumerable.Range(0, 3001).Select(_ => random.Next(6) == 0 ? 0f : random.Next(1, 50) / 64f)];
        double total = ProbabilityMath.MassAbove(weights, 0, strictly: false);
        int[] sorted = [.. Enumerable.Range(0, weights.Length).OrderByDescending(i => weights[i]).ThenBy(i => i)];
        HashSet<int> expected = [];
        for (double mass = 0; mass < p * total; expected.Add(sorted[expected.Count]))
        {
            mass += weights[sorted[expected.Count]];
        }

        (float cut, int tiedKept) = TopPCut.Find(weights, p * total, upperBound: 1);

        HashSet<int> kept = [];
        int tiesLeft = tiedKept;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] > cut || (weights[i] == cut && tiesLeft-- > 0))
            {
                kept.Add(i);
            }
        }

        Assert.Equal(expected.Order(), kept.Order());
    }
}
