namespace Serving.Runtime.KvCompression;

/// <summary>
/// Reads one sequence's cached keys for a compression: the engine's KV blocks, or the batch-1
/// tensors of the single-sequence path. The policies score what it returns.
/// </summary>
public interface IKvKeyReader
{
    /// <summary>
    /// The first <paramref name="slots"/> keys of KV head <paramref name="head"/> of
    /// <paramref name="layer"/> as float32 <c>[slots, head_dim]</c>, in <paramref name="scratch"/>
    /// (<c>slots · head_dim</c> floats) or in place; valid until the next read.
    /// </summary>
    ReadOnlySpan<float> Read(int layer, int head, int slots, Span<float> scratch);
}
