namespace Serving.Trainer.Layers;

/// <summary>y = x·W with W stored [in, out], the ONNX MatMul layout the builder writes.</summary>
internal static class Linear
{
    public static void Forward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, int rows, int inDim, int outDim, Span<float> y) =>
        Blas.Gemm(false, false, rows, outDim, inDim, 1f, x, inDim, w, outDim, 0f, y, outDim);

    /// <summary>
    /// dx = dy·Wᵀ (added to <paramref name="dx"/> when <paramref name="accumulateDx"/>, else
    /// overwriting it) and dW += xᵀ·dy.
    /// </summary>
    public static void Backward(ReadOnlySpan<float> x, ReadOnlySpan<float> w, ReadOnlySpan<float> dy, int rows, int inDim, int outDim,
        Span<float> dx, bool accumulateDx, Span<float> dw)
    {
        Blas.Gemm(false, true, rows, inDim, outDim, 1f, dy, outDim, w, outDim, accumulateDx ? 1f : 0f, dx, inDim);
        Blas.Gemm(true, false, inDim, outDim, rows, 1f, x, inDim, dy, outDim, 1f, dw, outDim);
    }
}
