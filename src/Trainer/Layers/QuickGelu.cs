namespace Serving.Trainer.Layers;

/// <summary>CLIP's activation: y = u·σ(1.702·u) (the ONNX graph's Mul(u, Sigmoid(Mul(u, 1.702)))).</summary>
internal static class QuickGelu
{
    private const float Slope = 1.702f;

    public static void Forward(ReadOnlySpan<float> u, Span<float> y)
    {
        for (int i = 0; i < u.Length; i++)
        {
            y[i] = u[i] * Sigmoid(Slope * u[i]);
        }
    }

    /// <summary>dy/du = σ + 1.702·u·σ·(1 − σ), σ = σ(1.702·u).</summary>
    public static void Backward(ReadOnlySpan<float> u, ReadOnlySpan<float> dy, Span<float> du)
    {
        for (int i = 0; i < u.Length; i++)
        {
            float s = Sigmoid(Slope * u[i]);
            du[i] = dy[i] * (s + Slope * u[i] * s * (1f - s));
        }
    }

    private static float Sigmoid(float x) => 1f / (1f + MathF.Exp(-x));
}
