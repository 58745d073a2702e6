namespace Serving.Trainer.Layers;

/// <summary>
/// CLIP's LayerNorm over rows of <c>dim</c>: y = (x − mean)·r·g + b, r = 1/sqrt(var + eps) with
/// the population variance, as ONNX LayerNormalization computes it.
/// </summary>
internal static class LayerNorm
{
    /// <summary>Writes y, and each row's mean and r (kept for the backward pass).</summary>
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> gain, ReadOnlySpan<float> bias, float eps,
        Span<float> y, Span<float> mean, Span<float> inverseStd)
    {
        int dim = gain.Length;
        for (int row = 0; row < mean.Length; row++)
        {
            ReadOnlySpan<float> xr = x.Slice(row * dim, dim);
            Span<float> yr = y.Slice(row * dim, dim);
            double sum = 0;
            foreach (float value in xr)
            {
                sum += value;
            }

            float mu = (float)(sum / dim);
            double squares = 0;
            foreach (float value in xr)
            {
                squares += (value - mu) * (value - mu);
            }

            float r = (float)(1.0 / Math.Sqrt(squares / dim + eps));
            mean[row] = mu;
            inverseStd[row] = r;
            for (int i = 0; i < dim; i++)
            {
                yr[i] = (xr[i] - mu) * r * gain[i] + bias[i];
            }
        }
    }

    /// <summary>
    /// With x̂ = (x − mean)·r and g = dy·gain: dx = r·(g − mean(g) − x̂·mean(g·x̂)), written or
    /// added (<paramref name="accumulateDx"/>); dGain += Σ_rows dy·x̂, dBias += Σ_rows dy.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> gain, ReadOnlySpan<float> mean, ReadOnlySpan<float> inverseStd,
        ReadOnlySpan<float> dy, Span<float> dx, bool accumulateDx, Span<float> dGain, Span<float> dBias)
    {
        int dim = gain.Length;
        for (int row = 0; row < mean.Length; row++)
        {
            ReadOnlySpan<float> xr = x.Slice(row * dim, dim), dyr = dy.Slice(row * dim, dim);
            Span<float> dxr = dx.Slice(row * dim, dim);
            float mu = mean[row], r = inverseStd[row];
            double sumG = 0, sumGx = 0;
            for (int i = 0; i < dim; i++)
            {
                float normalized = (xr[i] - mu) * r, g = dyr[i] * gain[i];
                dGain[i] += dyr[i] * normalized;
                dBias[i] += dyr[i];
                sumG += g;
                sumGx += g * normalized;
            }

            float meanG = (float)(sumG / dim), meanGx = (float)(sumGx / dim);
            for (int i = 0; i < dim; i++)
            {
                float normalized = (xr[i] - mu) * r;
                float value = r * (dyr[i] * gain[i] - meanG - normalized * meanGx);
                dxr[i] = accumulateDx ? dxr[i] + value : value;
            }
        }
    }
}
