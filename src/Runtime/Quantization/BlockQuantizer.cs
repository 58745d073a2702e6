namespace Serving.Runtime.Quantization;

/// <summary>How weights are quantized: bits per weight, weights per block, with or without zero points.</summary>
public readonly record struct BlockSpec(int Bits, int BlockSize, bool Symmetric)
{
    /// <summary>Bytes of one block's packed weights (MatMulNBits' <c>blob_size</c>).</summary>
    public int BlobSize => BlockSize * Bits / 8;

    /// <summary>The level that dequantizes to 0 when a block has no zero point: ONNX Runtime's default 2^(bits−1).</summary>
    public int DefaultZeroPoint => 1 << (Bits - 1);

    public int MaxLevel => (1 << Bits) - 1;

    public int Blocks(int k) => (k + BlockSize - 1) / BlockSize;

    /// <summary>Bytes of one row's packed zero points (MatMulNBits: <c>⌈k_blocks·bits/8⌉</c>).</summary>
    public int ZeroPointBytes(int k) => (Blocks(k) * Bits + 7) / 8;

    public static bool IsValidBlockSize(int blockSize) => blockSize >= 16 && (blockSize & (blockSize - 1)) == 0;
}

/// <summary>
/// An <c>[N, K]</c> matrix quantized along K in MatMulNBits' layout: <see cref="Data"/> is
/// <c>[N, k_blocks, blob_size]</c> (4-bit: low nibble first along K; K padded to whole blocks with
/// the zero level), <see cref="Scales"/> <c>[N, k_blocks]</c>, <see cref="ZeroPoints"/>
/// <c>[N, ⌈k_blocks·bits/8⌉]</c> packed the same way, or null for symmetric blocks.
/// </summary>
public sealed record QuantizedMatrix(int N, int K, BlockSpec Spec, byte[] Data, float[] Scales, byte[]? ZeroPoints)
{
    public int KBlocks => Spec.Blocks(K);

    /// <summary>The level of weight (n, k).</summary>
    public int Level(int n, int k)
    {
        long index = ((long)n * KBlocks * Spec.BlockSize) + k;
        return Spec.Bits == 8 ? Data[index] : (Data[index >> 1] >> (int)((index & 1) * 4)) & 0xF;
    }

    /// <summary>The zero level of block (n, b).</summary>
    public int ZeroPoint(int n, int block)
    {
        if (ZeroPoints is null)
        {
            return Spec.DefaultZeroPoint;
        }

        long index = (long)n * Spec.ZeroPointBytes(K);
        return Spec.Bits == 8 ? ZeroPoints[index + block] : (ZeroPoints[index + (block >> 1)] >> ((block & 1) * 4)) & 0xF;
    }
}

/// <summary>
/// Round-to-nearest (RTN) block quantization around ONNX Runtime's default zero point. Symmetric
/// 4-bit blocks use all 16 levels as llama.cpp's q4_0 and MLAS' own quantizer do: the weight of
/// largest magnitude m maps exactly to the lowest level (scale = m / −8, a signed scale), so the
/// steps are 1/15 finer than max|w| / 7 and only weights of the opposite sign beyond 7/8 of |m|
/// are clamped (by less than a step). Symmetric 8-bit blocks use scale = max|w| / 127 and levels
/// zp ± 127 (llama.cpp's q8_0), never clamping. Asymmetric blocks span [min(w, 0), max(w, 0)] over
/// all 2^bits levels with a rounded zero point.
/// </summary>
public static class BlockQuantizer
{
    /// <summary>
    /// Quantizes the rows of <paramref name="rows"/> (<c>[n, k]</c>, row-major) along k; rows are
    /// processed in parallel.
    /// </summary>
    public static QuantizedMatrix Quantize(float[] rows, int n, int k, BlockSpec spec)
    {
        if (rows.Length != (long)n * k)
        {
            throw new ArgumentException($"expected {(long)n * k} values for [{n}, {k}], got {rows.Length}", nameof(rows));
        }

        if (spec.Bits is not (4 or 8) || !BlockSpec.IsValidBlockSize(spec.BlockSize))
        {
            throw new ArgumentException($"unsupported block spec {spec}", nameof(spec));
        }

        int blocks = spec.Blocks(k);
        var data = new byte[(long)n * blocks * spec.BlobSize];
        var scales = new float[(long)n * blocks];
        byte[]? zeroPoints = spec.Symmetric ? null : new byte[(long)n * spec.ZeroPointBytes(k)];
        Parallel.For(0, n, row => QuantizeRow(rows.AsSpan((int)((long)row * k), k), row, spec, data, scales, zeroPoints));
        return new QuantizedMatrix(n, k, spec, data, scales, zeroPoints);
    }

    /// <summary>Quantizes a MatMul right operand <c>[k, n]</c> (our linear weights' layout) as the rows of its transpose.</summary>
    public static QuantizedMatrix QuantizeTransposed(ReadOnlySpan<float> weight, int k, int n, BlockSpec spec) =>
        Quantize(Transpose(weight, k, n), n, k, spec);

    /// <summary>A row-major <c>[k, n]</c> matrix as <c>[n, k]</c>.</summary>
    public static float[] Transpose(ReadOnlySpan<float> weight, int k, int n)
    {
        var transposed = new float[(long)n * k];
        for (int i = 0; i < k; i++)
        {
            for (int j = 0; j < n; j++)
            {
                transposed[((long)j * k) + i] = weight[(i * n) + j];
            }
        }

        return transposed;
    }

    /// <summary>The <c>[N, K]</c> values the quantized matrix stands for: (level − zero point) · scale.</summary>
    public static float[] Dequantize(QuantizedMatrix matrix)
    {
        var values = new float[(long)matrix.N * matrix.K];
        for (int n = 0; n < matrix.N; n++)
        {
            for (int k = 0; k < matrix.K; k++)
            {
                int block = k / matrix.Spec.BlockSize;
                float scale = matrix.Scales[((long)n * matrix.KBlocks) + block];
                values[((long)n * matrix.K) + k] = (matrix.Level(n, k) - matrix.ZeroPoint(n, block)) * scale;
            }
        }

        return values;
    }

    private static void QuantizeRow(ReadOnlySpan<float> row, int n, BlockSpec spec, byte[] data, float[] scales, byte[]? zeroPoints)
    {
        int blocks = spec.Blocks(row.Length);
        long levelBase = (long)n * blocks * spec.BlockSize;
        for (int block = 0; block < blocks; block++)
        {
            int start = block * spec.BlockSize, end = Math.Min(row.Length, start + spec.BlockSize);
            ReadOnlySpan<float> values = row[start..end];
            var (scale, zero) = spec.Symmetric ? SymmetricScale(values, spec) : AsymmetricScale(values, spec);
            scales[((long)n * blocks) + block] = scale;
            if (zeroPoints is not null)
            {
                SetZeroPoint(zeroPoints, ((long)n * spec.ZeroPointBytes(row.Length)), block, zero, spec.Bits);
            }

            float inverse = scale == 0 ? 0 : 1 / scale;
            for (int i = 0; i < spec.BlockSize; i++)
            {
                int level = i < values.Length ? Math.Clamp((int)MathF.Round(values[i] * inverse) + zero, 0, spec.MaxLevel) : zero;
                SetLevel(data, levelBase + start + i, level, spec.Bits);
            }
        }
    }

    private static (float Scale, int Zero) SymmetricScale(ReadOnlySpan<float> values, BlockSpec spec)
    {
        float extreme = 0;
        foreach (float v in values)
        {
            extreme = MathF.Abs(v) > MathF.Abs(extreme) ? v : extreme;
        }

        float scale = spec.Bits == 4 ? extreme / -spec.DefaultZeroPoint : MathF.Abs(extreme) / (spec.DefaultZeroPoint - 1);
        return (scale, spec.DefaultZeroPoint);
    }

    private static (float Scale, int Zero) AsymmetricScale(ReadOnlySpan<float> values, BlockSpec spec)
    {
        float min = 0, max = 0;
        foreach (float v in values)
        {
            min = MathF.Min(min, v);
            max = MathF.Max(max, v);
        }

        float scale = (max - min) / spec.MaxLevel;
        int zero = scale == 0 ? spec.DefaultZeroPoint : Math.Clamp((int)MathF.Round(-min / scale), 0, spec.MaxLevel);
        return (scale, zero);
    }

    private static void SetLevel(byte[] data, long index, int level, int bits)
    {
        if (bits == 8)
        {
            data[index] = (byte)level;
        }
        else
        {
            int shift = (int)(index & 1) * 4;
            data[index >> 1] = (byte)((data[index >> 1] & ~(0xF << shift)) | (level << shift));
        }
    }

    private static void SetZeroPoint(byte[] zeroPoints, long rowStart, int block, int zero, int bits)
    {
        if (bits == 8)
        {
            zeroPoints[rowStart + block] = (byte)zero;
        }
        else
        {
            int shift = (block & 1) * 4;
            long index = rowStart + (block >> 1);
            zeroPoints[index] = (byte)((zeroPoints[index] & ~(0xF << shift)) | (zero << shift));
        }
    }
}
