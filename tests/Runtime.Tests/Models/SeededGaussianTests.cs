using Serving.Runtime.Models;

namespace Serving.Runtime.Tests.Models;

public sealed class SeededGaussianTests
{
    [Fact]
    public void AMillionValuesAreAlmostAllDistinct()
    {
        float[] values = SeededGaussian.Sample("model.embed_tokens.weight", 1 << 20, std: 0.02, seed: 7);
        int distinct = new HashSet<float>(values).Count;

        // float32 of N(0, 0.02²) has ~2^23 values per binade near the mode: a few collisions, not 99.9%.
        Assert.True(distinct > 0.99 * values.Length, $"{distinct} distinct of {values.Length}");
    }

    [Fact]
    public void ChunksAreNotShiftedCopiesOfEachOther()
    {
        const int Chunk = 1 << 16;
        float[] values = SeededGaussian.Sample("w", 4 * Chunk, std: 1, seed: 1);
        for (int shift = -2; shift <= 2; shift++)
        {
            int equal = 0;
            for (int i = 0; i < 1000; i++)
            {
                equal += values[2 * Chunk + 10 + i] == values[10 + i + shift] ? 1 : 0;
            }

            Assert.True(equal < 5, $"chunk 2 equals chunk 0 shifted by {shift} at {equal} of 1000 values");
        }
    }

    [Fact]
    public void SameNameAndSeedGiveTheSameValuesAndOthersDiffer()
    {
        float[] first = SeededGaussian.Sample("a", 200_000, std: 1, seed: 3);
        Assert.Equal(first, SeededGaussian.Sample("a", 200_000, std: 1, seed: 3));
        Assert.NotEqual(first, SeededGaussian.Sample("a", 200_000, std: 1, seed: 4));
        Assert.NotEqual(first, SeededGaussian.Sample("b", 200_000, std: 1, seed: 3));
    }

    [Fact]
    public void ValuesHaveTheRequestedMeanAndStandardDeviation()
    {
        float[] values = SeededGaussian.Sample("w", 1 << 20, std: 0.5, seed: 9, mean: 1f);
        double mean = values.Average(v => (double)v);
        double std = Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
        Assert.InRange(mean, 0.998, 1.002);
        Assert.InRange(std, 0.498, 0.502);
    }
}
