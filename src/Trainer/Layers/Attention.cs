namespace Serving.Trainer.Layers;

/// <summary>The shape of one attention call: B sequences of S tokens, GQA heads, optional window.</summary>
/// <param name="Window">Key j is visible to query t when j ≤ t and t − j &lt; Window (int.MaxValue: global layer).</param>
/// <param name="Causal">False: every key is visible to every query (CLIP's vision tower); Window is then ignored.</param>
internal readonly record struct AttentionShape(int Batch, int Sequence, int QueryHeads, int KvHeads, int HeadDim, float Scale, int Window, bool Causal = true)
{
    public int QueryWidth => QueryHeads * HeadDim;
    public int KvWidth => KvHeads * HeadDim;
    public int Groups => QueryHeads / KvHeads;
    public int ProbabilityCount => Batch * QueryHeads * Sequence * Sequence;
}

/// <summary>
/// Causal (or, for vision, bidirectional) softmax attention over rows laid out [B·S, heads·D]. Each (sequence, head) is two
/// GEMMs on strided views (lda = heads·D), so nothing is copied; query head h reads KV head
/// h / groups. The probabilities [B, Hq, S, S] are kept for the backward pass.
/// </summary>
internal static class Attention
{
    public static void Forward(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        Span<float> probabilities, Span<float> output)
    {
        int s = shape.Sequence, d = shape.HeadDim;
        for (int b = 0; b < shape.Batch; b++)
        {
            for (int h = 0; h < shape.QueryHeads; h++)
            {
                (int qOffset, int kvOffset) = Offsets(shape, b, h);
                Span<float> p = Probabilities(shape, probabilities, b, h);
                Blas.Gemm(false, true, s, s, d, shape.Scale, q[qOffset..], shape.QueryWidth, k[kvOffset..], shape.KvWidth, 0f, p, s);
                MaskedSoftmax(p, s, shape.Window, shape.Causal);
                Blas.Gemm(false, false, s, d, s, 1f, p, s, v[kvOffset..], shape.KvWidth, 0f, output[qOffset..], shape.QueryWidth);
            }
        }
    }

    /// <summary>
    /// dP = dO·Vᵀ; dS = P ⊙ (dP − rowsum(P ⊙ dP)); dQ = scale·dS·K; dK += scale·dSᵀ·Q;
    /// dV += Pᵀ·dO. dq, dk, dv are overwritten; <paramref name="scratch"/> holds S × S values.
    /// </summary>
    public static void Backward(in AttentionShape shape, ReadOnlySpan<float> q, ReadOnlySpan<float> k, ReadOnlySpan<float> v,
        ReadOnlySpan<float> probabilities, ReadOnlySpan<float> dOutput, Span<float> dq, Span<float> dk, Span<float> dv, Span<float> scratch)
    {
        int s = shape.Sequence, d = shape.HeadDim;
        dk.Clear();
        dv.Clear();
        Span<float> ds = scratch[..(s * s)];
        for (int b = 0; b < shape.Batch; b++)
        {
            for (int h = 0; h < shape.QueryHeads; h++)
            {
                (int qOffset, int kvOffset) = Offsets(shape, b, h);
                ReadOnlySpan<float> p = Probabilities(shape, probabilities, b, h);
                ReadOnlySpan<float> dO = dOutput[qOffset..];
                Blas.Gemm(false, true, s, s, d, 1f, dO, shape.QueryWidth, v[kvOffset..], shape.KvWidth, 0f, ds, s);
                SoftmaxBackward(p, ds, s);
                Blas.Gemm(true, false, s, d, s, 1f, p, s, dO, shape.QueryWidth, 1f, dv[kvOffset..], shape.KvWidth);
                Blas.Gemm(false, false, s, d, s, shape.Scale, ds, s, k[kvOffset..], shape.KvWidth, 0f, dq[qOffset..], shape.QueryWidth);
                Blas.Gemm(true, false, s, d, s, shape.Scale, ds, s, q[qOffset..], shape.QueryWidth, 1f, dk[kvOffset..], shape.KvWidth);
            }
        }
    }

    private static (int Query, int Kv) Offsets(in AttentionShape shape, int b, int h) =>
        (b * shape.Sequence * shape.QueryWidth + h * shape.HeadDim,
         b * shape.Sequence * shape.KvWidth + h / shape.Groups * shape.HeadDim);

    private static Span<float> Probabilities(in AttentionShape shape, Span<float> all, int b, int h) =>
        all.Slice((b * shape.QueryHeads + h) * shape.Sequence * shape.Sequence, shape.Sequence * shape.Sequence);

    private static ReadOnlySpan<float> Probabilities(in AttentionShape shape, ReadOnlySpan<float> all, int b, int h) =>
        all.Slice((b * shape.QueryHeads + h) * shape.Sequence * shape.Sequence, shape.Sequence * shape.Sequence);

    /// <summary>Row t keeps columns (t − window, t] (all of them when not causal); the rest become exact zeros.</summary>
    private static void MaskedSoftmax(Span<float> scores, int s, int window, bool causal)
    {
        for (int t = 0; t < s; t++)
        {
            Span<float> row = scores.Slice(t * s, s);
            int first = !causal || window == int.MaxValue ? 0 : Math.Max(0, t - window + 1);
            int last = causal ? t : s - 1;
            float max = float.NegativeInfinity;
            for (int j = first; j <= last; j++)
            {
                max = MathF.Max(max, row[j]);
            }

            float sum = 0;
            for (int j = first; j <= last; j++)
            {
                row[j] = MathF.Exp(row[j] - max);
                sum += row[j];
            }

            float inverse = 1f / sum;
            row[..first].Clear();
            for (int j = first; j <= last; j++)
            {
                row[j] *= inverse;
            }

            row[(last + 1)..].Clear();
        }
    }

    /// <summary>In place: dP becomes dS = P ⊙ (dP − Σ_j P·dP). Masked entries (P = 0) stay 0.</summary>
    private static void SoftmaxBackward(ReadOnlySpan<float> p, Span<float> dp, int s)
    {
        for (int t = 0; t < s; t++)
        {
            ReadOnlySpan<float> pr = p.Slice(t * s, s);
            Span<float> dr = dp.Slice(t * s, s);
            float dot = 0;
            for (int j = 0; j < s; j++)
            {
                dot += pr[j] * dr[j];
            }

            for (int j = 0; j < s; j++)
            {
                dr[j] = pr[j] * (dr[j] - dot);
            }
        }
    }
}
