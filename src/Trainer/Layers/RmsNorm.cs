namespace Serving.Trainer.Layers;

/// <summary>Gemma's RMSNorm over rows of <c>dim</c>: y = x / sqrt(mean(x²) + eps) · (1 + w).</summary>
internal static class RmsNorm
{
    /// <summary>Writes y and each row's 1/rms (kept for the backward pass).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, float eps, Span<float> y, Span<float> inverseRms)
    {
        int dim = w.Length;
        for (int row = 0; row < inverseRms.Length; row++)
        {
            ReadOnlySpan<float> xr = x.Slice(row * dim, dim);
            Span<float> yr = y.Slice(row * dim, dim);
            double sumOfSquares = 0;
            foreach (float value in xr)
            {
                sumOfSquares += value * value;
            }

            float r = (float)(1.0 / Math.Sqrt(sumOfSquares / dim + eps));
            inverseRms[row] = r;
            for (int i = 0; i < dim; i++)
            {
                yr[i] = xr[i] * r * (1f + w[i]);
            }
        }
    }

    /// <summary>
    /// With x̂ = x·r and g = dy·(1 + w): dx = r·(g − x̂·mean(g·x̂)), written or added
    /// (<paramref name="accumulateDx"/>); dw += Σ_rows dy·x̂.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> inverseRms, ReadOnlySpan<float> dy,
        Span<float> dx, bool accumulateDx, Span<float> dw)
    {
        int dim = w.Length;
        for (int row = 0; row < inverseRms.Length; row++)
        {
            ReadOnlySpan<float> xr = x.Slice(row * dim, dim), dyr = dy.Slice(row * dim, dim);
            Span<float> dxr = dx.Slice(row * dim, dim);
            float r = inverseRms[row];
            double dot = 0;
            for (int i = 0; i < dim; i++)
            {
                float normalized = xr[i] * r;
                dw[i] += dyr[i] * normalized;
                dot += dyr[i] * (1f + w[i]) * normalized;
            }

            float mean = (float)(dot / dim);
            for (int i = 0; i < dim; i++)
            {
                float value = r * (dyr[i] * (1f + w[i]) - xr[i] * r * mean);
                dxr[i] = accumulateDx ? dxr[i] + value : value;
            }
        }
    }
}
