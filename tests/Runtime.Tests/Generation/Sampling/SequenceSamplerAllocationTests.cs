using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

/// <summary>Runs alone: a few seconds of 262,144-token passes would skew the suite's wall-clock tests.</summary>
[CollectionDefinition(nameof(SequenceSamplerAllocationTests), DisableParallelization = true)]
[Collection(nameof(SequenceSamplerAllocationTests))]
public sealed class SequenceSamplerAllocationTests
{
    private const int GemmaVocab = 262_144;

    public static TheoryData<double, SamplingParams> Cases() => new()
    {
        // Peaked logits: the best 1,024 candidates hold ≥ 0.9 of the mass.
        { 6.0, new SamplingParams { TopP = 0.9, TopLogprobs = 5, Seed = 1 } },
        // Flat logits: top-p falls back to a cut over the whole vocabulary.
        { 0.5, new SamplingParams { TopP = 0.9, TopLogprobs = 5, Seed = 1 } },
        { 2.0, new SamplingParams { Temperature = 0.7, TopK = 50, MinP = 0.05, RepetitionPenalty = 1.1, PresencePenalty = 0.3, FrequencyPenalty = 0.2, TopLogprobs = 20 } },
        { 2.0, new SamplingParams { TopLogprobs = 5 } },
        { 2.0, SamplingParams.Greedy with { RepetitionPenalty = 1.2, TopLogprobs = 1 } },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Sample_OnAGemmaSizedVocabulary_AllocatesNothingAfterTheFirstCall(double logitScale, SamplingParams parameters)
    {
        float[] logits = SamplerDraws.Gaussian(GemmaVocab, logitScale, seed: 4);
        int[] prompt = [.. Enumerable.Range(0, 300).Select(i => i * 811 % GemmaVocab)];
        SequenceSampler sampler = new(parameters, GemmaVocab, prompt, defaultSeed: 5);
        TokenLogprob[] top = new TokenLogprob[SamplingParams.MaxTopLogprobs];
        sampler.Sample(logits, out _, top, out _);

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int i = 0; i < 50; i++)
        {
            logits[i * 7] += 0.5f;
            sampler.Sample(logits, out _, top, out _);
            sampler.Sample(logits);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }
}
