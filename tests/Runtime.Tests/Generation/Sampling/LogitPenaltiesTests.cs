using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class LogitPenaltiesTests
{
    [Fact]
    public void Repetition_OnPromptAndGenerated_PresenceAndFrequency_OnGeneratedOnly()
    {
        SamplingParams parameters = new() { RepetitionPenalty = 2, PresencePenalty = 0.5, FrequencyPenalty = 0.25 };
        LogitPenalties penalties = new(parameters, vocabSize: 70, promptIds: [1, 1, 65]);
        penalties.Record(2);
        penalties.Record(2);
        penalties.Record(3);
        penalties.Record(66);
        float[] logits = new float[70];
        logits[0] = 2f;
        logits[1] = 2f;
        logits[2] = -2f;
        logits[3] = 1f;
        logits[65] = -3f;
        logits[66] = 0f;
        logits[69] = 5f;
        float[] penalized = new float[70];

        penalties.Apply(logits, penalized);

        float[] expected = (float[])logits.Clone();
        expected[1] = 2f / 2;                      // prompt, positive: divided
        expected[2] = (-2f * 2) - (2 * 0.25f) - 0.5f; // generated twice, negative: multiplied, then counted
        expected[3] = (1f / 2) - 0.25f - 0.5f;
        expected[65] = -3f * 2;                    // prompt, beyond the first 64-token word
        expected[66] = (0f * 2) - 0.25f - 0.5f;    // zero counts as not positive (× p)
        Assert.Equal(expected, penalized);
    }

    [Fact]
    public void PresenceAndFrequency_LeavePromptTokensAlone()
    {
        LogitPenalties penalties = new(new SamplingParams { PresencePenalty = 2, FrequencyPenalty = 2 }, 4, [0, 1, 2, 3]);
        float[] logits = [1f, -1f, 0f, 3f];
        float[] penalized = new float[4];

        penalties.Apply(logits, penalized);

        Assert.Equal(logits, penalized);
    }

    [Fact]
    public void Greedy_SeesTheRepetitionPenaltyOnPromptTokens()
    {
        float[] logits = [3f, 2.5f];

        Assert.Equal(0, new SequenceSampler(SamplingParams.Greedy, 2, [0], 1).Next(logits));
        Assert.Equal(1, new SequenceSampler(SamplingParams.Greedy with { RepetitionPenalty = 2 }, 2, [0], 1).Next(logits));
    }

    [Fact]
    public void Greedy_SeesPresencePenaltyOnlyAfterTheTokenIsGenerated()
    {
        SequenceSampler sampler = new(SamplingParams.Greedy with { PresencePenalty = 2 }, 2, [0], 1);
        float[] logits = [3f, 2.5f];

        Assert.Equal(0, sampler.Next(logits));
        Assert.Equal(1, sampler.Next(logits));
    }

    [Fact]
    public void FrequencyPenalty_GrowsWithEachOccurrence()
    {
        // 0 leads 1 by 0.5 and 2 by 1.0; −0.4 per occurrence rotates the pick.
        SequenceSampler sampler = new(SamplingParams.Greedy with { FrequencyPenalty = 0.4 }, 3, [], 1);
        float[] logits = [3f, 2.5f, 2f];
        int[] picks = new int[6];
        for (int i = 0; i < picks.Length; i++)
        {
            picks[i] = sampler.Next(logits);
        }

        Assert.Equal([0, 0, 1, 0, 1, 2], picks);
    }

    [Fact]
    public void PromptIdsOutsideTheVocabulary_AreRefused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new SequenceSampler(new SamplingParams { RepetitionPenalty = 1.1 }, 4, [4], 0));
    }
}
