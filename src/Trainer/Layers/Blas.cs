using System.Runtime.InteropServices;

namespace Serving.Trainer.Layers;

/// <summary>
/// Row-major single-precision GEMM through OpenBLAS (Debian's <c>libopenblas0-pthread</c>):
/// C = alpha·op(A)·op(B) + beta·C. Every matrix product of the trainer goes through here;
/// a view of a head inside a wider row is a pointer offset plus a leading dimension.
/// </summary>
internal static unsafe partial class Blas
{
    private const string Library = "libopenblas.so.0";
    private const int RowMajor = 101, NoTrans = 111, Trans = 112;

    [LibraryImport(Library, EntryPoint = "cblas_sgemm")]
    private static partial void Sgemm(int order, int transA, int transB, int m, int n, int k,
        float alpha, float* a, int lda, float* b, int ldb, float beta, float* c, int ldc);

    /// <summary>
    /// C[m, n] = alpha·op(A)·op(B) + beta·C, op(A) being [m, k] and op(B) [k, n]. The spans start
    /// at each matrix's first element; lda/ldb/ldc are the row strides of the stored matrices.
    /// </summary>
    public static void Gemm(bool transA, bool transB, int m, int n, int k, float alpha,
        ReadOnlySpan<float> a, int lda, ReadOnlySpan<float> b, int ldb, float beta, Span<float> c, int ldc)
    {
        // Last element each operand reads: guards the unchecked pointer arithmetic of BLAS.
        CheckExtent(a.Length, transA ? k : m, transA ? m : k, lda, nameof(a));
        CheckExtent(b.Length, transB ? n : k, transB ? k : n, ldb, nameof(b));
        CheckExtent(c.Length, m, n, ldc, nameof(c));
        fixed (float* pa = a, pb = b, pc = c)
        {
            Sgemm(RowMajor, transA ? Trans : NoTrans, transB ? Trans : NoTrans, m, n, k,
                alpha, pa, lda, pb, ldb, beta, pc, ldc);
        }
    }

    private static void CheckExtent(int length, int rows, int columns, int stride, string name)
    {
        if (rows > 0 && columns > 0 && (stride < columns || (long)(rows - 1) * stride + columns > length))
        {
            throw new ArgumentException($"matrix {name} [{rows}, {columns}] with stride {stride} does not fit in {length} values", name);
        }
    }
}
