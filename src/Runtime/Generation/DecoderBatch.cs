using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Generation;

/// <summary>
/// One decoder call: <c>BatchSize × NewTokens</c> token ids (left-padded), an attention mask
/// over <c>past + NewTokens</c> global slots, true positions, and each layer's past. The
/// buffers are read during <see cref="ModelRunner.Run"/> only (pooled buffers may be reused
/// after it returns); the past values stay owned by the caller.
/// </summary>
public sealed record DecoderBatch(
    int BatchSize,
    int NewTokens,
    Memory<long> InputIds,
    Memory<long> AttentionMask,
    Memory<long> PositionIds,
    IReadOnlyList<OrtValue> PastKeys,
    IReadOnlyList<OrtValue> PastValues)
{
    /// <summary>Logits for the last position only (graphs with <c>num_logits_to_keep</c>), as decoding needs.</summary>
    public bool LastLogitsOnly { get; init; }

    public int TotalLength => AttentionMask.Length / BatchSize;
}
