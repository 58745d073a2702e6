using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx;
using Serving.Runtime.Tests.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// The PagedAttention op fed a float16 kv_pool through ONNX Runtime (the same graph but for the
/// pool input's type): it attends like the fp32-pool op over the same values and stores the new
/// keys and values as halves rounded to nearest even. The kernels against a double reference
/// on every ISA are the native tests' (paged_attention_test.cpp).
/// </summary>
public sealed class PagedAttentionFp16PoolTests
{
    private const int Heads = 4, KvHeads = 2, HeadSize = 8, BlockSize = 4, NumBlocks = 6, Tokens = 6;
    private static readonly string[] Inputs = PagedAttentionModel.Inputs;

    // Sequence 0: 3 past slots + a 5-token chunk; sequence 1: 6 past slots + one decode token.
    private static readonly int[] Tables = [4, 1, 0, 2, 5, 3];
    private static readonly int[] Past = [3, 6], Starts = [0, 5, 6];
    private static readonly long[] PoolShape = [NumBlocks, 2, KvHeads, BlockSize, HeadSize];

    private static float[] Random(Random rng, int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    private static ushort Bits(float x) => BitConverter.HalfToUInt16Bits((Half)x);

    private static float Widen(ushort bits) => (float)BitConverter.UInt16BitsToHalf(bits);

    /// <summary>The pool index of element <paramref name="e"/> of a slot's key (part 0) or value (1) in sequence <paramref name="seq"/>.</summary>
    private static int PoolIndex(int seq, int slot, int part, int kvHead, int e) =>
        (((Tables[seq * 3 + slot / BlockSize] * 2 + part) * KvHeads + kvHead) * BlockSize + slot % BlockSize) * HeadSize + e;

    [Theory]
    [InlineData(0)]
    [InlineData(3)]
    public void AFloat16PoolAttendsLikeTheFp32PoolOverTheSameValues(long window)
    {
        var rng = new Random(11);
        float[] query = Random(rng, Tokens * Heads * HeadSize), key = Random(rng, Tokens * KvHeads * HeadSize), value = Random(rng, Tokens * KvHeads * HeadSize);
        ushort[] halves = [.. Random(rng, NumBlocks * 2 * KvHeads * BlockSize * HeadSize).Select(Bits)];

        Float16[] pool16 = [.. halves.Select(b => new Float16(b))];
        float[] fp16Output = Run(window, query, key, value, pool16);
        // The fp32 pool holds the same values; fed the keys and values rounded as the fp16 pool
        // stores them, it does the same fp32 math (measured: within 9e-8, where the compiler
        // fused a multiply-add in one instantiation and not the other).
        float[] sameValues = Run(window, query, Rounded(key), Rounded(value), [.. halves.Select(Widen)]);
        float[] exact = Run(window, query, key, value, [.. halves.Select(Widen)]);

        double againstSameValues = MaxDifference(fp16Output, sameValues), againstExact = MaxDifference(fp16Output, exact);
        Assert.True(againstSameValues <= 1e-6, $"max difference {againstSameValues} against the fp32 pool over the rounded keys");
        // Rounding the call's keys and values (relative 2^-11) moves these outputs by up to 1.7e-4.
        Assert.True(againstExact <= 1e-3, $"max difference {againstExact} against the fp32 pool over the exact keys");

        for (int s = 0; s < 2; s++)
        {
            for (int t = Starts[s]; t < Starts[s + 1]; t++)
            {
                int slot = Past[s] + t - Starts[s];
                for (int h = 0; h < KvHeads; h++)
                {
                    for (int e = 0; e < HeadSize; e++)
                    {
                        int row = (t * KvHeads + h) * HeadSize + e;
                        Assert.Equal(Bits(key[row]), pool16[PoolIndex(s, slot, 0, h, e)].value);
                        Assert.Equal(Bits(value[row]), pool16[PoolIndex(s, slot, 1, h, e)].value);
                        halves[PoolIndex(s, slot, 0, h, e)] = Bits(key[row]);
                        halves[PoolIndex(s, slot, 1, h, e)] = Bits(value[row]);
                    }
                }
            }
        }

        Assert.Equal(halves, pool16.Select(h => h.value));  // and nothing else was written
    }

    [Fact]
    public void AMisshapenFloat16PoolIsAnErrorNamingTheAcceptedTypes()
    {
        using var folder = new TempFolder();
        string path = folder.File("paged.onnx");
        OnnxModelFile.Save(PagedAttentionModel.Build(window: 0, layer: 0, Heads, KvHeads, DataType.Float16), path, externalThresholdBytes: long.MaxValue);
        using InferenceSession session = SingleOpModel.Open(path);
        using OrtValue q = OrtValue.CreateTensorValueFromMemory(new float[Heads * HeadSize], [1, Heads * HeadSize]);
        using OrtValue k = OrtValue.CreateTensorValueFromMemory(new float[KvHeads * HeadSize], [1, KvHeads * HeadSize]);
        using OrtValue pool = OrtValue.CreateTensorValueFromMemory(new Float16[NumBlocks * 2 * KvHeads * BlockSize * HeadSize], [NumBlocks, 2, KvHeads, BlockSize * HeadSize]);
        using OrtValue tables = OrtValue.CreateTensorValueFromMemory(new[] { 0 }, [1, 1, 1]);
        using OrtValue past = OrtValue.CreateTensorValueFromMemory(new[] { 0 }, [1, 1]);
        using OrtValue starts = OrtValue.CreateTensorValueFromMemory(new[] { 0, 1 }, [2]);
        using var options = new RunOptions();
        var error = Assert.Throws<OnnxRuntimeException>(() => session.Run(options, Inputs, [q, k, k, pool, tables, past, starts], ["output"]));
        Assert.Contains("PagedAttention node 'attention': kv_pool (float or float16) has shape [6, 2, 2, 32]", error.Message);
    }

    private static float[] Rounded(float[] values) => [.. values.Select(x => Widen(Bits(x)))];

    private static double MaxDifference(float[] a, float[] b) => a.Zip(b, (x, y) => Math.Abs((double)x - y)).Max();

    private static float[] Run(long window, float[] query, float[] key, float[] value, float[] pool)
    {
        using OrtValue poolValue = OrtValue.CreateTensorValueFromMemory(pool, PoolShape);
        return Run(window, DataType.Float, query, key, value, poolValue);
    }

    private static float[] Run(long window, float[] query, float[] key, float[] value, Float16[] pool)
    {
        using OrtValue poolValue = OrtValue.CreateTensorValueFromMemory(pool, PoolShape);
        return Run(window, DataType.Float16, query, key, value, poolValue);
    }

    /// <summary>One call of the op (layer 0, one layer of tables) over <paramref name="pool"/> of element type <paramref name="type"/>, written in place.</summary>
    private static float[] Run(long window, DataType type, float[] query, float[] key, float[] value, OrtValue pool)
    {
        using var folder = new TempFolder();
        string path = folder.File("paged.onnx");
        OnnxModelFile.Save(PagedAttentionModel.Build(window, layer: 0, Heads, KvHeads, type), path, externalThresholdBytes: long.MaxValue);
        using InferenceSession session = SingleOpModel.Open(path);
        using OrtValue q = OrtValue.CreateTensorValueFromMemory(query, [Tokens, Heads * HeadSize]);
        using OrtValue k = OrtValue.CreateTensorValueFromMemory(key, [Tokens, KvHeads * HeadSize]);
        using OrtValue v = OrtValue.CreateTensorValueFromMemory(value, [Tokens, KvHeads * HeadSize]);
        using OrtValue tables = OrtValue.CreateTensorValueFromMemory(Tables, [1, 2, 3]);
        using OrtValue past = OrtValue.CreateTensorValueFromMemory(Past, [1, 2]);
        using OrtValue starts = OrtValue.CreateTensorValueFromMemory(Starts, [3]);
        using var options = new RunOptions();
        using var outputs = session.Run(options, Inputs, [q, k, v, pool, tables, past, starts], ["output"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }
}
