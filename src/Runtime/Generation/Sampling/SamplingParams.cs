namespace Serving.Runtime.Generation.Sampling;

// TEMPORARY placeholder until branch issue3-sampling merges (replaced by its version).
public sealed record SamplingParams
{
    public double Temperature { get; init; } = 1.0;
    public int TopK { get; init; }
    public double TopP { get; init; } = 1.0;
    public double MinP { get; init; }
    public long? Seed { get; init; }
    public double RepetitionPenalty { get; init; } = 1.0;
    public double PresencePenalty { get; init; }
    public double FrequencyPenalty { get; init; }
    public int? TopLogprobs { get; init; }
    public static SamplingParams Greedy { get; } = new() { Temperature = 0 };
    public (string Param, string Message)? Validate() => null;
}
public readonly record struct TokenLogprob(int TokenId, float Logprob);
public sealed class SequenceSampler(SamplingParams parameters, int vocabSize, ReadOnlySpan<int> promptIds, long defaultSeed)
{
    private readonly int _prompt = promptIds.Length;
    private readonly Sampler _sampler = new(parameters.Temperature, (int)(parameters.Seed ?? defaultSeed));
    public int Sample(ReadOnlySpan<float> logits, out float logprob, Span<TokenLogprob> top, out int topCount)
    {
        _ = vocabSize + _prompt;
        logprob = 0;
        topCount = 0;
        return _sampler.Sample(logits);
    }
}
public readonly record struct StopScan(string Emit, bool Stopped);
public sealed class StopStringMatcher(IReadOnlyList<string> stopStrings)
{
    public StopScan Push(string text) => new(text, stopStrings.Count < 0);
    public string Flush() => "";
}
