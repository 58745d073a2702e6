using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// The manager's pool and tables fed to the PagedAttention op as they are: the block layout,
/// a sliding layer's released blocks and a shared prefix, against attention over each sequence's slots in double.
/// </summary>
public sealed class KvCacheManagerOpTests
{
    private const int Heads = 4, KvHeads = 2, HeadSize = 8, BlockTokens = 4, Window = 9;
    private static readonly string[] Inputs = PagedAttentionModel.Inputs;

    /// <summary>The past key (part 0) or value (1) of a slot: sequences 0 and 1 share their first 8 slots.</summary>
    private static float Past(int seq, int layer, int slot, int part, int head, int e) =>
        (float)Math.Sin(1.7 * (slot < 8 ? 0 : seq + 1) + 0.3 * layer + 0.11 * slot + 0.5 * part + 0.7 * head + 0.013 * e);

    private static void WritePast(KvCacheManager kv, SequenceBlocks seq, int id, int from, int to)
    {
        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            for (int slot = from; slot < to; slot++)
            {
                Span<float> block = MemoryMarshal.Cast<byte, float>(kv.HostBlock(seq.BlockAt(layer, slot / BlockTokens)));
                for (int part = 0; part < 2; part++)
                {
                    for (int h = 0; h < KvHeads; h++)
                    {
                        for (int e = 0; e < HeadSize; e++)
                        {
                            block[((part * KvHeads + h) * BlockTokens + slot % BlockTokens) * HeadSize + e] = Past(id, layer, slot, part, h, e);
                        }
                    }
                }
            }
        }
    }

    [Fact]
    public void TheOpReadsAGlobalLayerThroughTheManagersTables()
    {
        using var kv = new KvCacheManager(KvLayouts.Of("G", Window, KvHeads, HeadSize), 12 * 512, BlockTokens);
        AttendsLikeTheReference(kv, window: 0);
    }

    [Fact]
    public void TheOpReadsASlidingLayerThroughTheManagersTables()
    {
        using var kv = new KvCacheManager(KvLayouts.Of("S", Window, KvHeads, HeadSize), 12 * 512, BlockTokens);
        AttendsLikeTheReference(kv, window: Window);
    }

    [Fact]
    public void TheOpReadsBothLayersOfAMixedModel()
    {
        using var kv = new KvCacheManager(KvLayouts.Of("GS", Window, KvHeads, HeadSize), 24 * 512, BlockTokens);
        AttendsLikeTheReference(kv, window: 0, layer: 0);
        AttendsLikeTheReference(kv, window: Window, layer: 1);
    }

    /// <summary>
    /// Sequence 0 computes 12 slots and registers them; sequence 1 takes 8 from the cache and
    /// computes 1; then one decode step each (sequence 0's first sliding block leaves the window).
    /// </summary>
    private static void AttendsLikeTheReference(KvCacheManager kv, int window, int layer = 0)
    {
        UInt128[] hashes = BlockHashes.Of([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12], BlockTokens, 0);
        SequenceBlocks first = kv.NewSequence(), second = kv.NewSequence();
        Assert.True(kv.TryGrow(first, 12, 12));
        WritePast(kv, first, 0, 0, 12);
        kv.CommitFullBlocks(first, hashes, 3);
        Assert.Equal(8, kv.MatchPrefix(second, hashes[..2], 8));
        Assert.True(kv.TryGrow(second, 9, 9));
        WritePast(kv, second, 1, 8, 9);

        int[] past = [12, 9], starts = [0, 1, 2];
        Assert.True(kv.TryGrow(first, 13, 13));
        Assert.True(kv.TryGrow(second, 10, 10));
        SequenceBlocks[] batch = [first, second];
        int cols = kv.TableCols(batch);
        var tables = new int[kv.Layout.Layers * batch.Length * cols];
        kv.WriteTables(batch, tables, cols);

        var rng = new Random(5);
        float[] query = Random(rng, 2 * Heads * HeadSize), key = Random(rng, 2 * KvHeads * HeadSize), value = Random(rng, 2 * KvHeads * HeadSize);
        float[] actual = Run(kv, window, layer, tables, cols, past, starts, query, key, value);
        float[] expected = Reference(window, layer, past, query, key, value);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) < 1e-5, $"element {i}: {actual[i]} against {expected[i]}");
        }
    }

    private static float[] Random(Random rng, int count)
    {
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)(rng.NextDouble() * 2 - 1);
        }

        return values;
    }

    private static float[] Run(KvCacheManager kv, int window, int layer, int[] tables, int cols, int[] past, int[] starts, float[] query, float[] key, float[] value)
    {
        using var folder = new TempFolder();
        string path = folder.File("paged.onnx");
        OnnxModelFile.Save(Model(window, layer), path, externalThresholdBytes: long.MaxValue);
        int layers = kv.Layout.Layers;
        int[] pastOfEveryLayer = [.. Enumerable.Range(0, layers).SelectMany(_ => past)];
        using InferenceSession session = SingleOpModel.Open(path);
        int tokens = starts[^1];
        using OrtValue q = OrtValue.CreateTensorValueFromMemory(query, [1, tokens, Heads * HeadSize]);
        using OrtValue k = OrtValue.CreateTensorValueFromMemory(key, [1, tokens, KvHeads * HeadSize]);
        using OrtValue v = OrtValue.CreateTensorValueFromMemory(value, [1, tokens, KvHeads * HeadSize]);
        using OrtValue pool = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float,
            [kv.NumBlocks, 2, KvHeads, BlockTokens, HeadSize], kv.PoolPointer, kv.AllocatedBytes);
        using OrtValue table = OrtValue.CreateTensorValueFromMemory(tables, [layers, past.Length, cols]);
        using OrtValue pastValue = OrtValue.CreateTensorValueFromMemory(pastOfEveryLayer, [layers, past.Length]);
        using OrtValue startValue = OrtValue.CreateTensorValueFromMemory(starts, [starts.Length]);
        using var outputs = session.Run(new RunOptions(), Inputs, [q, k, v, pool, table, pastValue, startValue], ["output"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>One new token per sequence attending to its visible past slots and itself, in double.</summary>
    private static float[] Reference(int window, int layer, int[] past, float[] query, float[] key, float[] value)
    {
        var output = new float[query.Length];
        for (int s = 0; s < past.Length; s++)
        {
            for (int head = 0; head < Heads; head++)
            {
                int kv = head / (Heads / KvHeads), seq = s;
                int first = window == 0 ? 0 : Math.Max(0, past[s] - (window - 1));
                double Part(int slot, int part, int e) =>
                    slot < past[seq] ? Past(seq, layer, slot, part, kv, e) : (part == 0 ? key : value)[(seq * KvHeads + kv) * HeadSize + e];
                var scores = new double[past[s] + 1 - first];
                for (int j = 0; j < scores.Length; j++)
                {
                    for (int e = 0; e < HeadSize; e++)
                    {
                        scores[j] += query[(s * Heads + head) * HeadSize + e] * Part(first + j, 0, e) / Math.Sqrt(HeadSize);
                    }
                }

                double top = scores.Max(), sum = scores.Sum(x => Math.Exp(x - top));
                for (int e = 0; e < HeadSize; e++)
                {
                    double mixed = 0;
                    for (int j = 0; j < scores.Length; j++)
                    {
                        mixed += Math.Exp(scores[j] - top) / sum * Part(first + j, 1, e);
                    }

                    output[(s * Heads + head) * HeadSize + e] = (float)mixed;
                }
            }
        }

        return output;
    }

    private static ModelProto Model(long window, long layer) => PagedAttentionModel.Build(window, layer, Heads, KvHeads);
}
