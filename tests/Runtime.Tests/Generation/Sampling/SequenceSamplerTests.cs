using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class SequenceSamplerTests
{
    [Fact]
    public void Greedy_PicksTheArgMax_TiesToTheLowerId()
    {
        SequenceSampler sampler = new(SamplingParams.Greedy, 6, [], 1);

        Assert.Equal(2, sampler.Next([1f, 2f, 3f, 3f, float.MinValue, -5f]));
        Assert.Equal(0, sampler.Next([float.MinValue, float.MinValue, float.MinValue, float.MinValue, float.MinValue, float.MinValue]));
        Assert.Equal(5, sampler.Next([float.MinValue, -9f, -8f, -7f, -6f, -1f]));
    }

    [Fact]
    public void Greedy_IgnoresTheSeed()
    {
        float[] logits = SamplerDraws.Gaussian(1000, 2, seed: 3);
        int expected = Array.IndexOf(logits, logits.Max());

        for (long seed = 0; seed < 5; seed++)
        {
            Assert.Equal(expected, new SequenceSampler(SamplingParams.Greedy with { Seed = seed }, 1000, [], seed).Next(logits));
        }
    }

    [Fact]
    public void SameSeed_SameTokens_DifferentSeed_DifferentTokens()
    {
        float[] logits = SamplerDraws.Gaussian(50, 0.5, seed: 1);

        int[] first = Draws(new SamplingParams { Seed = 42, TopP = 0.95 }, logits, defaultSeed: 1);
        int[] again = Draws(new SamplingParams { Seed = 42, TopP = 0.95 }, logits, defaultSeed: 2);
        int[] other = Draws(new SamplingParams { Seed = 43, TopP = 0.95 }, logits, defaultSeed: 1);
        int[] defaultSeeded = Draws(new SamplingParams { TopP = 0.95 }, logits, defaultSeed: 42);

        Assert.Equal(first, again);
        Assert.Equal(first, defaultSeeded);
        Assert.True(first.Zip(other).Count(pair => pair.First != pair.Second) > 150, "different seeds should mostly disagree");
    }

    [Theory]
    [InlineData(1.0)]
    [InlineData(0.7)]
    [InlineData(1.8)]
    public void TemperatureDraws_MatchTheSoftmaxFrequencies(double temperature)
    {
        float[] logits = [1f, 2f, 0.5f, -1f];
        const int draws = 20_000;

        int[] counts = SamplerDraws.Counts(new SamplingParams { Temperature = temperature }, logits, draws);

        double[] expected = [.. SamplerDraws.LogSoftmax([.. logits.Select(x => (float)(x / temperature))]).Select(Math.Exp)];
        double chiSquare = counts.Select((count, i) => Math.Pow(count - (draws * expected[i]), 2) / (draws * expected[i])).Sum();
        // 3 degrees of freedom: P(χ² > 25) ≈ 1.6e-5, so a correct sampler fails this with almost no seed.
        Assert.True(chiSquare < 25, $"χ² = {chiSquare:F1}, counts {string.Join(",", counts)}");
    }

    [Fact]
    public void TopKOne_EqualsGreedy()
    {
        SequenceSampler topK = new(new SamplingParams { TopK = 1, Temperature = 1.3 }, 1000, [], 5);

        for (int step = 0; step < 30; step++)
        {
            float[] logits = SamplerDraws.Gaussian(1000, 3, seed: step);
            Assert.Equal(Array.IndexOf(logits, logits.Max()), topK.Next(logits));
        }
    }

    [Fact]
    public void TopK_KeepsExactlyTheKBest()
    {
        float[] logits = [1f, 5f, 2f, 4f, 3f, 0f, 4.5f, -1f];

        Assert.Equal([1, 3, 6], SamplerDraws.DrawnIds(new SamplingParams { TopK = 3, Temperature = 5 }, logits));
        Assert.Equal(Enumerable.Range(0, 8), SamplerDraws.DrawnIds(new SamplingParams { TopK = -1, Temperature = 5 }, logits));
        Assert.Equal(Enumerable.Range(0, 8), SamplerDraws.DrawnIds(new SamplingParams { TopK = 100, Temperature = 5 }, logits));
    }

    [Theory]
    [InlineData(0.35, new[] { 2 })]
    [InlineData(0.65, new[] { 0, 2 })]
    [InlineData(0.75, new[] { 0, 2, 3 })]
    [InlineData(0.95, new[] { 0, 1, 2, 3 })]
    public void TopP_KeepsTheSmallestSetReachingP(double topP, int[] expected)
    {
        float[] logits = SamplerDraws.FromProbabilities(0.3, 0.1, 0.4, 0.2);

        Assert.Equal(expected, SamplerDraws.DrawnIds(new SamplingParams { TopP = topP }, logits));
    }

    [Fact]
    public void TopP_AppliesToTheTopKRenormalizedDistribution()
    {
        float[] logits = SamplerDraws.FromProbabilities(0.3, 0.1, 0.4, 0.2);

        // Over all four tokens 0.4 < 0.5 needs a second token; within the top 2 (0.4/0.7 = 0.57) it does not.
        Assert.Equal([0, 2], SamplerDraws.DrawnIds(new SamplingParams { TopP = 0.5 }, logits));
        Assert.Equal([2], SamplerDraws.DrawnIds(new SamplingParams { TopP = 0.5, TopK = 2 }, logits));
    }

    [Theory]
    [InlineData(0.2, new[] { 0, 1, 2 })]
    [InlineData(0.5, new[] { 0, 1 })]
    [InlineData(1.0, new[] { 0 })]
    public void MinP_DropsTokensBelowMinPTimesTheBest(double minP, int[] expected)
    {
        float[] logits = SamplerDraws.FromProbabilities(0.5, 0.3, 0.15, 0.05);

        Assert.Equal(expected, SamplerDraws.DrawnIds(new SamplingParams { MinP = minP }, logits));
        Assert.Equal(expected, SamplerDraws.DrawnIds(new SamplingParams { MinP = minP, TopP = 0.99 }, logits));
        Assert.Equal(expected, SamplerDraws.DrawnIds(new SamplingParams { MinP = minP, TopK = 4 }, logits));
    }

    [Fact]
    public void TopP_OnAFlatVocabulary_FallsBackToTheWholeVocabulary()
    {
        // 8,192 nearly equal logits: the best 1,024 hold ~13% of the mass, so top-p = 0.5 must look past them.
        const int vocab = 8192;
        float[] logits = [.. Enumerable.Range(0, vocab).Select(i => -i * 5e-5f)];
        double[] probabilities = [.. SamplerDraws.LogSoftmax(logits).Select(Math.Exp)];
        int kept = 0;
        for (double mass = 0; mass < 0.5; kept++)
        {
            mass += probabilities[kept];
        }

        int[] counts = SamplerDraws.Counts(new SamplingParams { TopP = 0.5 }, logits, 3000);

        Assert.All(counts.Skip(kept), count => Assert.Equal(0, count));
        Assert.True(counts.Skip(1024).Take(kept - 1024).Sum() > 1500, "most draws lie past the first 1,024 tokens");
        Assert.True(counts.Skip(kept - 200).Take(200).Sum() > 0, "the last tokens of the kept set are drawn");
    }

    [Fact]
    public void Logprob_IsTheRawLogSoftmax_WhateverChangesTheLogits()
    {
        float[] logits = SamplerDraws.Gaussian(5000, 4, seed: 11);
        logits[17] = float.MinValue;
        logits[18] = 40f;
        double[] reference = SamplerDraws.LogSoftmax(logits);
        SamplingParams[] all =
        [
            SamplingParams.Greedy,
            new() { Temperature = 0.6, TopP = 0.9, TopK = 40 },
            new() { Temperature = 1.5, RepetitionPenalty = 1.3, PresencePenalty = 0.5, MinP = 0.01 },
        ];

        foreach (SamplingParams parameters in all)
        {
            SequenceSampler sampler = new(parameters, logits.Length, [18, 3], 9);
            for (int step = 0; step < 20; step++)
            {
                int id = sampler.Sample(logits, out float logprob, [], out int topCount);
                Assert.Equal(reference[id], logprob, 1e-4);
                Assert.Equal(0, topCount);
            }
        }
    }

    [Fact]
    public void TopLogprobs_AreTheBestRawLogprobs_BestFirst()
    {
        float[] logits = SamplerDraws.Gaussian(3000, 2, seed: 12);
        logits[100] = logits[200] = 9f;
        double[] reference = SamplerDraws.LogSoftmax(logits);
        int[] bestIds = [.. Enumerable.Range(0, logits.Length).OrderByDescending(i => logits[i]).ThenBy(i => i).Take(5)];
        SequenceSampler sampler = new(new SamplingParams { TopLogprobs = 5, Temperature = 0.8 }, logits.Length, [], 3);
        TokenLogprob[] top = new TokenLogprob[8];

        sampler.Sample(logits, out _, top, out int topCount);

        Assert.Equal(5, topCount);
        Assert.Equal(bestIds, top.Take(5).Select(t => t.TokenId));
        Assert.Equal([100, 200], bestIds[..2]);
        Assert.All(top.Take(5), t => Assert.Equal(reference[t.TokenId], t.Logprob, 1e-4));
        Assert.Throws<ArgumentException>(() => sampler.Sample(logits, out _, new TokenLogprob[4], out _));
    }

    [Fact]
    public void TopLogprobsZero_ReturnsNoAlternatives_ButTheLogprob()
    {
        SequenceSampler sampler = new(new SamplingParams { TopLogprobs = 0 }, 3, [], 3);

        sampler.Sample([0f, 0f, 0f], out float logprob, [], out int topCount);

        Assert.Equal(0, topCount);
        Assert.Equal(-Math.Log(3), logprob, 1e-6);
    }

    [Fact]
    public void SampleWithoutLogprobs_PicksTheSameTokens()
    {
        SamplingParams[] all =
        [
            SamplingParams.Greedy with { FrequencyPenalty = 0.5 },
            new() { Seed = 3 },
            new() { Seed = 3, Temperature = 0.6, TopP = 0.8, MinP = 0.02 },
            new() { Seed = 3, Temperature = 1.4, TopK = 20, RepetitionPenalty = 1.3, PresencePenalty = 0.4 },
        ];

        foreach (SamplingParams parameters in all)
        {
            SequenceSampler withLogprobs = new(parameters, 2000, [5, 6], 1);
            SequenceSampler without = new(parameters, 2000, [5, 6], 1);
            for (int step = 0; step < 40; step++)
            {
                float[] logits = SamplerDraws.Gaussian(2000, 2, seed: step);
                Assert.Equal(withLogprobs.Next(logits), without.Sample(logits));
            }
        }
    }

    [Fact]
    public void Sample_RefusesLogitsOfTheWrongLength()
    {
        SequenceSampler sampler = new(new SamplingParams(), 4, [], 0);

        Assert.Throws<ArgumentException>(() => sampler.Sample([1f, 2f, 3f], out _, [], out _));
        Assert.Throws<ArgumentException>(() => sampler.Sample([1f, 2f, 3f, 4f, 5f]));
    }

    private static int[] Draws(SamplingParams parameters, float[] logits, long defaultSeed)
    {
        SequenceSampler sampler = new(parameters, logits.Length, [], defaultSeed);
        int[] tokens = new int[200];
        for (int i = 0; i < tokens.Length; i++)
        {
            tokens[i] = sampler.Next(logits);
        }

        return tokens;
    }
}
