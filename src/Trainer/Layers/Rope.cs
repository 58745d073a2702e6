namespace Serving.Trainer.Layers;

/// <summary>
/// Rotate-half RoPE for one base: band f pairs x[f] with x[f + D/2] and turns the pair by
/// position·base^(−2f/D). cos/sin are tabulated once per position (a 512 × 32 table is 64 KB)
/// instead of ~0.5 M sincos calls per layer and step.
/// </summary>
internal sealed class Rope
{
    private readonly float[] _cos, _sin;
    private readonly int _half;

    public Rope(int headDim, double ropeBase, int maxPositions)
    {
        _half = headDim / 2;
        _cos = new float[maxPositions * _half];
        _sin = new float[maxPositions * _half];
        for (int p = 0; p < maxPositions; p++)
        {
            for (int f = 0; f < _half; f++)
            {
                // float32 inverse frequencies, as the ONNX graph multiplies them.
                float inverseFrequency = (float)(1.0 / Math.Pow(ropeBase, 2.0 * f / headDim));
                (double sin, double cos) = Math.SinCos(p * inverseFrequency);
                _cos[p * _half + f] = (float)cos;
                _sin[p * _half + f] = (float)sin;
            }
        }
    }

    public int MaxPositions => _cos.Length / _half;

    /// <summary>
    /// Rotates every head of every row in place; row t sits at <paramref name="positions"/>[t].
    /// <paramref name="inverse"/> turns by −angle: the transpose, which is the backward pass.
    /// </summary>
    public void Apply(Span<float> x, int numHeads, ReadOnlySpan<int> positions, bool inverse)
    {
        int d = 2 * _half;
        float direction = inverse ? -1f : 1f;
        for (int t = 0; t < positions.Length; t++)
        {
            ReadOnlySpan<float> cos = _cos.AsSpan(positions[t] * _half, _half);
            ReadOnlySpan<float> sin = _sin.AsSpan(positions[t] * _half, _half);
            for (int head = 0; head < numHeads; head++)
            {
                Span<float> v = x.Slice((t * numHeads + head) * d, d);
                for (int f = 0; f < _half; f++)
                {
                    float first = v[f], second = v[f + _half], s = direction * sin[f];
                    v[f] = first * cos[f] - second * s;
                    v[f + _half] = second * cos[f] + first * s;
                }
            }
        }
    }
}
