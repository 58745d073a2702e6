namespace Serving.Runtime.KvCompression;

/// <summary>
/// The cached keys of one KV head of one compressed layer, as a policy scores them: post-RoPE
/// keys <c>[slots, head_dim]</c> (float32, widened from a float16 cache), the true position of
/// each slot, and the sequence's length (tokens processed so far, the next token's position).
/// </summary>
public readonly ref struct KvHeadKeys(int layer, int kvHead, ReadOnlySpan<float> keys, int headDim, ReadOnlySpan<int> positions, int length)
{
    public int Layer { get; } = layer;
    public int KvHead { get; } = kvHead;
    public ReadOnlySpan<float> Keys { get; } = keys;
    public int HeadDim { get; } = headDim;
    public ReadOnlySpan<int> Positions { get; } = positions;
    public int Length { get; } = length;
    public int Slots => Positions.Length;

    public ReadOnlySpan<float> Key(int slot) => Keys.Slice(slot * HeadDim, HeadDim);
}

/// <summary>
/// Decides which cached tokens a compressed layer keeps. Contract: <see cref="Score"/> writes
/// one score per slot, higher meaning "keep"; scores of different layers of the same KV head
/// are averaged when they share one token set, so a policy returns scores on a common scale
/// (z-scores, positions, negated norms). Called only on the engine thread; implementations may
/// keep scratch buffers but no per-sequence state.
/// </summary>
public interface IKvEvictionPolicy
{
    /// <summary>The name used in the API, the configuration and the CLI (<c>triattention</c>, <c>window</c>, <c>knorm</c>).</summary>
    string Name { get; }

    void Score(in KvHeadKeys keys, Span<float> scores);
}
