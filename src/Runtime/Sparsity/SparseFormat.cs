using System.Runtime.InteropServices;
using Google.Protobuf;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Sparsity;

/// <summary>
/// A linear weight pruned to 2:4 and stored compressed, in the layout the native op
/// <c>SparseMatMul24</c> reads (src/KernelsNative/include/sparse24.h): per output column n,
/// <see cref="Values"/> holds the 2 kept weights of every group of 4 input features
/// (ascending feature index) and <see cref="Masks"/> one 4-bit keep-mask per group, two
/// groups per byte (even group in the low nibble). K is padded to a multiple of 4 with zeros.
/// </summary>
public sealed record PackedWeight(int K, int N, float[] Values, byte[] Masks)
{
    public int Groups => (K + 3) / 4;
    public int ValueStride => Groups * 2;
    public int MaskStride => (Groups + 1) / 2;

    /// <summary>Bytes stored: 53% of fp32 dense (2 of 4 floats plus half a byte per group).</summary>
    public long ByteCount => Values.LongLength * sizeof(float) + Masks.LongLength;
}

/// <summary>Packs and unpacks 2:4 weights; the selection rule is the caller's score.</summary>
public static class SparseFormat
{
    public const string Domain = "ai.serving";
    public const string OpType = "SparseMatMul24";

    /// <summary>
    /// Prunes the dense <c>[K, N]</c> MatMul weight to 2:4 per output column, keeping in each
    /// group of 4 input features the 2 with the largest |W[k, n]| · scale[k] (magnitude
    /// pruning when <paramref name="featureScale"/> is null, Wanda with input-feature norms).
    /// Ties keep the lower feature index.
    /// </summary>
    public static PackedWeight Pack(ReadOnlySpan<float> dense, int k, int n, ReadOnlySpan<float> featureScale = default)
    {
        if (k <= 0 || n <= 0 || dense.Length != (long)k * n)
        {
            throw new ArgumentException($"a [{k}, {n}] weight needs {(long)k * n} values, got {dense.Length}", nameof(dense));
        }

        if (!featureScale.IsEmpty && featureScale.Length != k)
        {
            throw new ArgumentException($"feature scale has {featureScale.Length} values for K = {k}", nameof(featureScale));
        }

        var packed = new PackedWeight(k, n, new float[(long)n * ((k + 3) / 4 * 2)], new byte[(long)n * (((k + 3) / 4 + 1) / 2)]);
        Span<float> weights = stackalloc float[4];
        Span<float> scores = stackalloc float[4];
        for (int g = 0; g < packed.Groups; g++)
        {
            for (int column = 0; column < n; column++)
            {
                for (int i = 0; i < 4; i++)
                {
                    int feature = 4 * g + i;
                    weights[i] = feature < k ? dense[feature * n + column] : 0f;
                    // Padding features score below any real one, so they are kept only when a group has a single real feature.
                    scores[i] = feature < k ? MathF.Abs(weights[i]) * (featureScale.IsEmpty ? 1f : featureScale[feature]) : -1f;
                }

                var (lo, hi) = TopTwo(scores);
                long at = (long)column * packed.ValueStride + 2 * g;
                packed.Values[at] = weights[lo];
                packed.Values[at + 1] = weights[hi];
                packed.Masks[(long)column * packed.MaskStride + g / 2] |= (byte)(((1 << lo) | (1 << hi)) << (g % 2 * 4));
            }
        }

        return packed;
    }

    /// <summary>The dense <c>[K, N]</c> weight with the pruned entries zero.</summary>
    public static float[] Unpack(PackedWeight packed)
    {
        var dense = new float[(long)packed.K * packed.N];
        for (int column = 0; column < packed.N; column++)
        {
            for (int g = 0; g < packed.Groups; g++)
            {
                int nibble = Nibble(packed, column, g);
                int slot = 0;
                for (int i = 0; i < 4; i++)
                {
                    if ((nibble >> i & 1) == 0)
                    {
                        continue;
                    }

                    if (4 * g + i < packed.K)
                    {
                        dense[(4 * g + i) * (long)packed.N + column] = packed.Values[(long)column * packed.ValueStride + 2 * g + slot];
                    }

                    slot++;
                }
            }
        }

        return dense;
    }

    /// <summary>Weights the op takes: fp32, or fp16 (computed in fp32, values kept in fp16).</summary>
    public static bool IsSupported(TensorProto weight) =>
        weight.DataType is (int)TensorProto.Types.DataType.Float or (int)TensorProto.Types.DataType.Float16;

    /// <summary>A weight's values as fp32, whether stored as fp32 or fp16.</summary>
    public static float[] ReadWeight(TensorProto weight, string modelDirectory)
    {
        if (weight.DataType != (int)TensorProto.Types.DataType.Float16)
        {
            return TensorData.ReadFloats(weight, modelDirectory);
        }

        var halves = new Half[TensorData.ElementCount(weight)];
        TensorData.ReadBytes(weight, modelDirectory, MemoryMarshal.AsBytes(halves.AsSpan()));
        return [.. halves.Select(h => (float)h)];
    }

    /// <summary>The kept values as an initializer of <paramref name="type"/> (fp32 or fp16), <c>[N, K4/2]</c>, inline.</summary>
    public static TensorProto ValuesTensor(PackedWeight packed, string name, TensorProto.Types.DataType type)
    {
        byte[] raw = type == TensorProto.Types.DataType.Float16
            ? MemoryMarshal.AsBytes(packed.Values.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
            : MemoryMarshal.AsBytes(packed.Values.AsSpan()).ToArray();
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        tensor.Dims.AddRange([packed.N, packed.ValueStride]);
        return tensor;
    }

    /// <summary>The keep-masks as a uint8 initializer <c>[N, ceil(K4/8)]</c>, inline.</summary>
    public static TensorProto MasksTensor(PackedWeight packed, string name)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Uint8, RawData = ByteString.CopyFrom(packed.Masks) };
        tensor.Dims.AddRange([packed.N, packed.MaskStride]);
        return tensor;
    }

    /// <summary>The keep-mask of group <paramref name="group"/> of output column <paramref name="column"/>.</summary>
    public static int Nibble(PackedWeight packed, int column, int group) =>
        packed.Masks[(long)column * packed.MaskStride + group / 2] >> (group % 2 * 4) & 0xF;

    private static (int Lo, int Hi) TopTwo(ReadOnlySpan<float> scores)
    {
        int best = 0, second = -1;
        for (int i = 1; i < 4; i++)
        {
            if (scores[i] > scores[best])
            {
                second = best;
                best = i;
            }
            else if (second < 0 || scores[i] > scores[second])
            {
                second = i;
            }
        }

        return (Math.Min(best, second), Math.Max(best, second));
    }
}
