using System.Numerics.Tensors;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// Key-norm eviction (Devoto et al., 2024; kvpress's KnormPress): keys with a small L2 norm
/// tend to draw the most attention, so the score is the negated norm.
/// </summary>
public sealed class KeyNormPolicy : IKvEvictionPolicy
{
    public string Name => "knorm";

    public void Score(in KvHeadKeys keys, Span<float> scores)
    {
        for (int slot = 0; slot < keys.Slots; slot++)
        {
            scores[slot] = -TensorPrimitives.Norm(keys.Key(slot));
        }
    }
}
