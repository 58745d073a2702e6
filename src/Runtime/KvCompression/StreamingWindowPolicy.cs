namespace Serving.Runtime.KvCompression;

/// <summary>
/// StreamingLLM (Xiao et al., 2023; kvpress's StreamingLLMPress): keeps the first
/// <see cref="SinkTokens"/> tokens, which soak up attention whatever they say, and the most
/// recent ones. The score is the position, with the sinks above every other token.
/// </summary>
public sealed class StreamingWindowPolicy(int sinkTokens = StreamingWindowPolicy.DefaultSinkTokens) : IKvEvictionPolicy
{
    public const int DefaultSinkTokens = 4;

    /// <summary>Above any position (positions stay under 2^31) and finite, so averaging over layers cannot overflow.</summary>
    private const float SinkScore = 1e30f;

    public string Name => "window";

    public int SinkTokens { get; } = sinkTokens;

    public void Score(in KvHeadKeys keys, Span<float> scores)
    {
        for (int slot = 0; slot < keys.Slots; slot++)
        {
            int position = keys.Positions[slot];
            scores[slot] = position < SinkTokens ? SinkScore : position;
        }
    }
}
