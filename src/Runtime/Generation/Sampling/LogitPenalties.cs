using System.Numerics;

namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// Repetition (HF/vLLM: prompt and generated tokens), then frequency and presence (OpenAI:
/// generated tokens only) penalties, in vLLM's order. Bit sets of the tokens seen let a pass
/// visit 4,096 words instead of 262,144 logits; only the seen tokens are touched.
/// </summary>
internal sealed class LogitPenalties
{
    private readonly float _repetition;
    private readonly float _presence;
    private readonly float _frequency;
    private readonly ulong[] _inPrompt;
    private readonly ulong[] _generated;
    private readonly int[] _counts;

    public LogitPenalties(SamplingParams parameters, int vocabSize, ReadOnlySpan<int> promptIds)
    {
        _repetition = (float)parameters.RepetitionPenalty;
        _presence = (float)parameters.PresencePenalty;
        _frequency = (float)parameters.FrequencyPenalty;
        int words = (vocabSize + 63) / 64;
        _inPrompt = new ulong[words];
        _generated = new ulong[words];
        _counts = new int[vocabSize];
        foreach (int id in promptIds)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(id, nameof(promptIds));
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(id, vocabSize, nameof(promptIds));
            _inPrompt[id >> 6] |= 1UL << id;
        }
    }

    public static bool AreActive(SamplingParams parameters) =>
        parameters.RepetitionPenalty != 1 || parameters.PresencePenalty != 0 || parameters.FrequencyPenalty != 0;

    /// <summary>Counts a generated token.</summary>
    public void Record(int tokenId)
    {
        _counts[tokenId]++;
        _generated[tokenId >> 6] |= 1UL << tokenId;
    }

    /// <summary>Writes the penalized <paramref name="logits"/> to <paramref name="destination"/> (may be the same span).</summary>
    public void Apply(ReadOnlySpan<float> logits, Span<float> destination)
    {
        logits.CopyTo(destination);
        for (int word = 0; word < _generated.Length; word++)
        {
            ulong seen = _inPrompt[word] | _generated[word];
            while (seen != 0)
            {
                int id = (word << 6) + BitOperations.TrailingZeroCount(seen);
                seen &= seen - 1;
                destination[id] = Penalize(destination[id], _counts[id]);
            }
        }
    }

    private float Penalize(float logit, int count)
    {
        float penalized = logit > 0 ? logit / _repetition : logit * _repetition;
        return penalized - (count * _frequency) - (count > 0 ? _presence : 0);
    }
}
