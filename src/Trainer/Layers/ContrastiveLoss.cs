namespace Serving.Trainer.Layers;

/// <summary>
/// CLIP's symmetric InfoNCE: rows are L2-normalised, logits = exp(τ)·û·t̂ᵀ for B images and
/// B captions, loss = ½(CE over each image's row + CE over each caption's column), the pair
/// (i, i) being the positive. τ is the learned log temperature (logit scale).
/// </summary>
internal static class ContrastiveLoss
{
    /// <summary>
    /// Returns the loss and, when the gradient spans are not empty, writes dL/dImages and
    /// dL/dTexts (with respect to the unnormalised rows) and returns dL/dτ through
    /// <paramref name="dLogScale"/>.
    /// </summary>
    public static double Forward(ReadOnlySpan<float> images, ReadOnlySpan<float> texts, int batch, int dim, float logScale,
        Span<float> dImages, Span<float> dTexts, out double dLogScale)
    {
        float[] u = Normalised(images, batch, dim, out float[] imageNorms);
        float[] t = Normalised(texts, batch, dim, out float[] textNorms);
        float scale = MathF.Exp(logScale);
        var logits = new float[batch * batch];
        Blas.Gemm(false, true, batch, batch, dim, scale, u, dim, t, dim, 0f, logits, batch);

        var rowSoftmax = new double[batch * batch];
        var columnSoftmax = new double[batch * batch];
        double loss = 0;
        for (int i = 0; i < batch; i++)
        {
            loss += SoftmaxLoss(logits, i * batch, 1, batch, i, rowSoftmax);
            loss += SoftmaxLoss(logits, i, batch, batch, i, columnSoftmax);
        }

        loss /= 2 * batch;
        dLogScale = 0;
        if (dImages.IsEmpty)
        {
            return loss;
        }

        // G = ½(softmax_rows − I + softmax_columns − I) / B: dL/dlogits.
        var g = new float[batch * batch];
        for (int i = 0; i < batch; i++)
        {
            for (int j = 0; j < batch; j++)
            {
                int index = i * batch + j;
                double value = (rowSoftmax[index] + columnSoftmax[index] - (i == j ? 2 : 0)) / (2.0 * batch);
                g[index] = (float)value;
                dLogScale += value * logits[index];
            }
        }

        var du = new float[batch * dim];
        var dt = new float[batch * dim];
        Blas.Gemm(false, false, batch, dim, batch, scale, g, batch, t, dim, 0f, du, dim);
        Blas.Gemm(true, false, batch, dim, batch, scale, g, batch, u, dim, 0f, dt, dim);
        NormaliseBackward(u, imageNorms, du, batch, dim, dImages);
        NormaliseBackward(t, textNorms, dt, batch, dim, dTexts);
        return loss;
    }

    /// <summary>−log softmax at <paramref name="target"/> over B logits spaced by <paramref name="stride"/>; stores the softmax.</summary>
    private static double SoftmaxLoss(float[] logits, int start, int stride, int count, int target, double[] softmax)
    {
        float max = float.NegativeInfinity;
        for (int k = 0; k < count; k++)
        {
            max = MathF.Max(max, logits[start + k * stride]);
        }

        double sum = 0;
        for (int k = 0; k < count; k++)
        {
            sum += Math.Exp(logits[start + k * stride] - max);
        }

        for (int k = 0; k < count; k++)
        {
            softmax[start + k * stride] = Math.Exp(logits[start + k * stride] - max) / sum;
        }

        return max + Math.Log(sum) - logits[start + target * stride];
    }

    private static float[] Normalised(ReadOnlySpan<float> rows, int batch, int dim, out float[] norms)
    {
        var result = new float[batch * dim];
        norms = new float[batch];
        for (int r = 0; r < batch; r++)
        {
            ReadOnlySpan<float> row = rows.Slice(r * dim, dim);
            norms[r] = MathF.Max(System.Numerics.Tensors.TensorPrimitives.Norm(row), 1e-12f);
            System.Numerics.Tensors.TensorPrimitives.Divide(row, norms[r], result.AsSpan(r * dim, dim));
        }

        return result;
    }

    /// <summary>d(x/‖x‖): dx = (dû − û·⟨û, dû⟩) / ‖x‖.</summary>
    private static void NormaliseBackward(float[] unit, float[] norms, float[] dUnit, int batch, int dim, Span<float> dx)
    {
        for (int r = 0; r < batch; r++)
        {
            ReadOnlySpan<float> ur = unit.AsSpan(r * dim, dim), dur = dUnit.AsSpan(r * dim, dim);
            float dot = System.Numerics.Tensors.TensorPrimitives.Dot(ur, dur);
            Span<float> dxr = dx.Slice(r * dim, dim);
            for (int k = 0; k < dim; k++)
            {
                dxr[k] = (dur[k] - ur[k] * dot) / norms[r];
            }
        }
    }
}
