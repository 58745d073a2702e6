namespace Serving.Trainer.Layers;

/// <summary>The bias half of CLIP's linear layers (the graph's Add after each MatMul).</summary>
internal static class Bias
{
    /// <summary>y[row] += b for every row.</summary>
    public static void Forward(ReadOnlySpan<float> b, Span<float> y)
    {
        int dim = b.Length;
        for (int offset = 0; offset < y.Length; offset += dim)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(y.Slice(offset, dim), b, y.Slice(offset, dim));
        }
    }

    /// <summary>dB += Σ_rows dy.</summary>
    public static void Backward(ReadOnlySpan<float> dy, Span<float> dB)
    {
        int dim = dB.Length;
        for (int offset = 0; offset < dy.Length; offset += dim)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(dB, dy.Slice(offset, dim), dB);
        }
    }
}
