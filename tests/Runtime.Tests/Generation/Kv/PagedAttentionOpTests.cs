using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// The PagedAttention op through ONNX Runtime: inputs as the engine feeds them, the pool
/// written in place, errors as ONNX Runtime exceptions naming the node. The kernels' numerics
/// against a double reference over many shapes are the native tests' (paged_attention_test.cpp).
/// </summary>
public sealed class PagedAttentionOpTests
{
    private const int Heads = 4, KvHeads = 2, HeadSize = 8, BlockSize = 4, NumBlocks = 6;
    private static readonly string[] Inputs = PagedAttentionModel.Inputs;

    /// <summary>The node of layer 1 of a 2-layer table: it must read its own slice.</summary>
    private static ModelProto Model(long window) => PagedAttentionModel.Build(window, layer: 1, Heads, KvHeads);

    private static float[] Random(Random rng, int count) => Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1)).ToArray();

    /// <summary>The pool index of element <paramref name="e"/> of logical slot <paramref name="slot"/>'s key (part 0) or value (1).</summary>
    private static int PoolIndex(int[] table, int slot, int part, int kvHead, int e) =>
        (((table[slot / BlockSize] * 2 + part) * KvHeads + kvHead) * BlockSize + slot % BlockSize) * HeadSize + e;

    [Fact]
    public void AttendsOverThePastInItsBlocksAndStoresTheNewSlotsInPlace()
    {
        var rng = new Random(7);
        using var folder = new TempFolder();
        string path = folder.File("paged.onnx");
        OnnxModelFile.Save(Model(window: 0), path, externalThresholdBytes: long.MaxValue);

        // Sequence 0: 3 past slots + a 5-token chunk; sequence 1: 6 past slots + one decode token.
        int[][] tables = [[4, 1, 0], [2, 5, 3]];
        int[] past = [3, 6], starts = [0, 5, 6];
        float[] pool = Random(rng, NumBlocks * 2 * KvHeads * BlockSize * HeadSize);
        float[] query = Random(rng, 6 * Heads * HeadSize), key = Random(rng, 6 * KvHeads * HeadSize), value = Random(rng, 6 * KvHeads * HeadSize);
        float[] expected = Reference(pool, tables, past, starts, query, key, value);

        using InferenceSession session = SingleOpModel.Open(path);
        using OrtValue q = OrtValue.CreateTensorValueFromMemory(query, [1, 6, Heads * HeadSize]);
        using OrtValue k = OrtValue.CreateTensorValueFromMemory(key, [1, 6, KvHeads * HeadSize]);
        using OrtValue v = OrtValue.CreateTensorValueFromMemory(value, [1, 6, KvHeads * HeadSize]);
        using OrtValue poolValue = OrtValue.CreateTensorValueFromMemory(pool, [NumBlocks, 2, KvHeads, BlockSize, HeadSize]);
        // Layer 0's slice points at blocks that do not exist and claims other lengths: the node must not read it.
        int[] bothLayers = [.. Enumerable.Repeat(-7, 6), .. tables.SelectMany(t => t)];
        using OrtValue tableValue = OrtValue.CreateTensorValueFromMemory(bothLayers, [2, 2, 3]);
        using OrtValue pastValue = OrtValue.CreateTensorValueFromMemory(new[] { 99, 99, past[0], past[1] }, [2, 2]);
        using OrtValue startValue = OrtValue.CreateTensorValueFromMemory(starts, [3]);
        using var outputs = session.Run(new RunOptions(), Inputs, [q, k, v, poolValue, tableValue, pastValue, startValue], ["output"]);

        Assert.Equal([1L, 6, Heads * HeadSize], outputs[0].GetTensorTypeAndShape().Shape);
        float[] actual = outputs[0].GetTensorDataAsSpan<float>().ToArray();
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) < 1e-5, $"element {i}: {actual[i]} against {expected[i]}");
        }

        // The new tokens' keys and values are now in the caller's pool, in their sequences' next slots.
        for (int s = 0; s < 2; s++)
        {
            for (int t = starts[s]; t < starts[s + 1]; t++)
            {
                int slot = past[s] + t - starts[s];
                for (int h = 0; h < KvHeads; h++)
                {
                    for (int e = 0; e < HeadSize; e++)
                    {
                        Assert.Equal(key[(t * KvHeads + h) * HeadSize + e], pool[PoolIndex(tables[s], slot, 0, h, e)]);
                        Assert.Equal(value[(t * KvHeads + h) * HeadSize + e], pool[PoolIndex(tables[s], slot, 1, h, e)]);
                    }
                }
            }
        }
    }

    [Fact]
    public void ABlockOutsideThePoolIsAnErrorNamingTheNodeAndSequence()
    {
        using var folder = new TempFolder();
        string path = folder.File("paged.onnx");
        OnnxModelFile.Save(Model(window: 0), path, externalThresholdBytes: long.MaxValue);
        using InferenceSession session = SingleOpModel.Open(path);
        using OrtValue q = OrtValue.CreateTensorValueFromMemory(new float[Heads * HeadSize], [1, Heads * HeadSize]);
        using OrtValue k = OrtValue.CreateTensorValueFromMemory(new float[KvHeads * HeadSize], [1, KvHeads * HeadSize]);
        using OrtValue pool = OrtValue.CreateTensorValueFromMemory(new float[NumBlocks * 2 * KvHeads * BlockSize * HeadSize], [NumBlocks, 2, KvHeads, BlockSize, HeadSize]);
        using OrtValue table = OrtValue.CreateTensorValueFromMemory(new[] { 0, 0, 0, NumBlocks }, [2, 1, 2]);
        using OrtValue past = OrtValue.CreateTensorValueFromMemory(new[] { 0, 4 }, [2, 1]);
        using OrtValue starts = OrtValue.CreateTensorValueFromMemory(new[] { 0, 1 }, [2]);
        var error = Assert.Throws<OnnxRuntimeException>(() => session.Run(new RunOptions(), Inputs, [q, k, k, pool, table, past, starts], ["output"]));
        Assert.Contains("PagedAttention node 'attention': sequence 0: block table entry 1 is 6", error.Message);
    }

    /// <summary>Causal attention in double over each sequence's past slots (read through its table) and its new tokens.</summary>
    private static float[] Reference(float[] pool, int[][] tables, int[] past, int[] starts, float[] query, float[] key, float[] value)
    {
        var output = new float[query.Length];
        int groups = Heads / KvHeads;
        for (int s = 0; s < tables.Length; s++)
        {
            for (int t = starts[s]; t < starts[s + 1]; t++)
            {
                int visible = past[s] + t - starts[s] + 1;
                for (int head = 0; head < Heads; head++)
                {
                    int kv = head / groups;
                    double KeyAt(int slot, int e) => slot < past[s] ? pool[PoolIndex(tables[s], slot, 0, kv, e)] : key[((starts[s] + slot - past[s]) * KvHeads + kv) * HeadSize + e];
                    double ValueAt(int slot, int e) => slot < past[s] ? pool[PoolIndex(tables[s], slot, 1, kv, e)] : value[((starts[s] + slot - past[s]) * KvHeads + kv) * HeadSize + e];
                    var scores = new double[visible];
                    for (int j = 0; j < visible; j++)
                    {
                        for (int e = 0; e < HeadSize; e++)
                        {
                            scores[j] += query[(t * Heads + head) * HeadSize + e] * KeyAt(j, e);
                        }

                        scores[j] /= Math.Sqrt(HeadSize);
                    }

                    double top = scores.Max(), sum = scores.Sum(x => Math.Exp(x - top));
                    for (int e = 0; e < HeadSize; e++)
                    {
                        double mixed = 0;
                        for (int j = 0; j < visible; j++)
                        {
                            mixed += Math.Exp(scores[j] - top) / sum * ValueAt(j, e);
                        }

                        output[(t * Heads + head) * HeadSize + e] = (float)mixed;
                    }
                }
            }
        }

        return output;
    }
}
