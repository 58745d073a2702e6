using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Generation;

/// <summary>
/// One decoder call: <c>BatchSize × NewTokens</c> token ids (left-padded), an attention mask
/// over <c>PastLength + NewTokens</c> global slots, true positions, and each layer's past.
/// The arrays are read during <see cref="ModelRunner.Run"/> only; the past values stay owned by the caller.
/// </summary>
public sealed record DecoderBatch(
    int BatchSize,
    int NewTokens,
    long[] InputIds,
    long[] AttentionMask,
    long[] PositionIds,
    IReadOnlyList<OrtValue> PastKeys,
    IReadOnlyList<OrtValue> PastValues)
{
    /// <summary>When the graph takes <c>num_logits_to_keep</c>, ask for the last position only.</summary>
    public bool LastLogitsOnly { get; init; }

    public int TotalLength => AttentionMask.Length / BatchSize;
}
