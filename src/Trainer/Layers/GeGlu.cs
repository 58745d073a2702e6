namespace Serving.Trainer.Layers;

/// <summary>Gemma's MLP gate: h = gelu_tanh(gate)·up, elementwise.</summary>
internal static class GeGlu
{
    private static readonly float Sqrt2OverPi = (float)Math.Sqrt(2.0 / Math.PI);
    private const float Cubic = 0.044715f;

    public static void Forward(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, Span<float> h)
    {
        for (int i = 0; i < h.Length; i++)
        {
            float x = gate[i];
            float t = MathF.Tanh(Sqrt2OverPi * (x + Cubic * x * x * x));
            h[i] = 0.5f * x * (1f + t) * up[i];
        }
    }

    /// <summary>gelu′(x) = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²), t = tanh(√(2/π)(x + 0.044715x³)).</summary>
    public static void Backward(ReadOnlySpan<float> gate, ReadOnlySpan<float> up, ReadOnlySpan<float> dh, Span<float> dGate, Span<float> dUp)
    {
        for (int i = 0; i < dh.Length; i++)
        {
            float x = gate[i];
            float t = MathF.Tanh(Sqrt2OverPi * (x + Cubic * x * x * x));
            float gelu = 0.5f * x * (1f + t);
            float slope = 0.5f * (1f + t) + 0.5f * x * (1f - t * t) * Sqrt2OverPi * (1f + 3f * Cubic * x * x);
            dGate[i] = dh[i] * up[i] * slope;
            dUp[i] = dh[i] * gelu;
        }
    }
}
