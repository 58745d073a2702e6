using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.KvCompression;

public sealed class KvCompressorTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private KvLayout Layout => new(fixture.Model.Signature, fixture.Config.SlidingWindow);

    /// <summary>
    /// Batch-1 caches of <paramref name="slots"/> tokens: element 0 of every key and value is
    /// the token's position (+1000 per layer, +100000 per head, negated for values), element 1
    /// is what <paramref name="norm"/> gives (so key norms can be steered).
    /// </summary>
    private (OrtValue[] Keys, OrtValue[] Values) Caches(int slots, Func<int, int, int, float>? norm = null)
    {
        KvLayout layout = Layout;
        var keys = new OrtValue[layout.Layers];
        var values = new OrtValue[layout.Layers];
        for (int layer = 0; layer < layout.Layers; layer++)
        {
            int count = layout.SlotsOf(layer, slots);
            keys[layer] = Make(layer, count, slots, sign: 1, norm);
            values[layer] = Make(layer, count, slots, sign: -1, norm);
        }

        return (keys, values);
    }

    private OrtValue Make(int layer, int count, int length, int sign, Func<int, int, int, float>? norm)
    {
        KvLayout layout = Layout;
        var data = new float[layout.Heads * count * layout.HeadDim];
        for (int head = 0; head < layout.Heads; head++)
        {
            for (int slot = 0; slot < count; slot++)
            {
                int position = length - count + slot;
                int at = (head * count + slot) * layout.HeadDim;
                data[at] = sign * (position + 1000 * layer + 100000 * head);
                data[at + 1] = norm?.Invoke(layer, head, position) ?? 0;
            }
        }

        return OrtValue.CreateTensorValueFromMemory(data, [1, layout.Heads, count, layout.HeadDim]);
    }

    /// <summary>Element 0 of each slot of (layer, head), decoded back to positions.</summary>
    private int[] PositionsIn(OrtValue value, int layer, int head, int sign = 1)
    {
        long[] shape = value.GetTensorTypeAndShape().Shape;
        float[] data = value.GetTensorDataAsSpan<float>().ToArray();
        int slots = (int)shape[2], dim = (int)shape[3];
        return Enumerable.Range(0, slots).Select(slot => (int)(sign * data[(head * slots + slot) * dim]) - 1000 * layer - 100000 * head).ToArray();
    }

    private static int[] Range(int start, int count) => Enumerable.Range(start, count).ToArray();

    [Fact]
    public void TheWindowPolicyKeepsTheSinksAndTheMostRecentTokensOfGlobalLayersOnly()
    {
        var compressor = new KvCompressor(Layout, new StreamingWindowPolicy(), new KvCompressionOptions { Policy = "window", Budget = 20, Beta = 10 });
        var (keys, values) = Caches(30);
        KvSlotMap map = compressor.CreateSlotMap();
        using DecoderOutputs compacted = compressor.Compact(new KvRowSource(keys, values, 0, 30), map, 30, promptLength: 5);

        int[] expected = [.. Range(0, 4), .. Range(14, 16)];
        for (int layer = 0; layer < Layout.Layers; layer++)
        {
            for (int head = 0; head < Layout.Heads; head++)
            {
                int[] kept = Layout.IsTrimmed[layer] ? Range(15, 15) : expected;
                Assert.Equal(kept, PositionsIn(compacted.PresentKeys[layer], layer, head));
                Assert.Equal(kept, PositionsIn(compacted.PresentValues[layer], layer, head, sign: -1));
            }
        }

        Assert.Equal(20, map.KeptCount);
        Assert.Equal(expected, Enumerable.Range(0, 20).Select(slot => map.Position(0, slot)));
        Assert.Equal(30, map.Position(0, 20));  // the next token appended
    }

    [Fact]
    public void ASecondCompressionReadsTheSlotMapNotTheSlotIndices()
    {
        var options = new KvCompressionOptions { Policy = "window", Budget = 20, Beta = 10 };
        var compressor = new KvCompressor(Layout, new StreamingWindowPolicy(), options);
        var (keys, values) = Caches(30);
        KvSlotMap map = compressor.CreateSlotMap();
        using DecoderOutputs first = compressor.Compact(new KvRowSource(keys, values, 0, 30), map, 30, 5);

        // 10 more tokens are appended at positions 30…39 (slots 20…29): build that cache from the first one.
        var (later, laterValues) = Caches(40);
        var grown = new OrtValue[Layout.Layers];
        var grownValues = new OrtValue[Layout.Layers];
        for (int layer = 0; layer < Layout.Layers; layer++)
        {
            (grown[layer], grownValues[layer]) = Layout.IsTrimmed[layer]
                ? (later[layer], laterValues[layer])
                : (Append(first.PresentKeys[layer], later[layer], 10), Append(first.PresentValues[layer], laterValues[layer], 10));
        }

        using DecoderOutputs second = compressor.Compact(new KvRowSource(grown, grownValues, 0, 30), map, 40, 5);
        int global = Enumerable.Range(0, Layout.Layers).First(layer => !Layout.IsTrimmed[layer]);
        Assert.Equal([.. Range(0, 4), .. Range(24, 16)], PositionsIn(second.PresentKeys[global], global, 1));
    }

    /// <summary>The cache <paramref name="head"/> followed by the last <paramref name="count"/> slots of <paramref name="tail"/>.</summary>
    private OrtValue Append(OrtValue head, OrtValue tail, int count)
    {
        KvLayout layout = Layout;
        int headSlots = (int)head.GetTensorTypeAndShape().Shape[2], tailSlots = (int)tail.GetTensorTypeAndShape().Shape[2];
        var data = new float[layout.Heads * (headSlots + count) * layout.HeadDim];
        ReadOnlySpan<float> a = head.GetTensorDataAsSpan<float>(), b = tail.GetTensorDataAsSpan<float>();
        for (int h = 0; h < layout.Heads; h++)
        {
            a.Slice(h * headSlots * layout.HeadDim, headSlots * layout.HeadDim).CopyTo(data.AsSpan(h * (headSlots + count) * layout.HeadDim));
            b.Slice((h * tailSlots + tailSlots - count) * layout.HeadDim, count * layout.HeadDim).CopyTo(data.AsSpan((h * (headSlots + count) + headSlots) * layout.HeadDim));
        }

        return OrtValue.CreateTensorValueFromMemory(data, [1, layout.Heads, headSlots + count, layout.HeadDim]);
    }

    [Fact]
    public void KeyNormKeepsTheSmallestKeysButNeverTheProtectedRecentOnes()
    {
        // Norms grow with position except for a few large early keys; the last 5 tokens have the largest norms but are protected.
        float Norm(int layer, int head, int position) => position >= 25 ? 1e6f : position % 3 == 0 ? 5000 : position;
        var options = new KvCompressionOptions { Policy = "knorm", Budget = 16, Beta = 10, ProtectRecent = 5 };
        var compressor = new KvCompressor(Layout, new KeyNormPolicy(), options);
        var (keys, values) = Caches(30, Norm);
        using DecoderOutputs compacted = compressor.Compact(new KvRowSource(keys, values, 0, 30), compressor.CreateSlotMap(), 30, 2);

        // Element 0 (position + offsets) dominates the norm too, so compare by what is kept, computed the same way.
        int global = Enumerable.Range(0, Layout.Layers).First(layer => !Layout.IsTrimmed[layer]);
        int[] kept = PositionsIn(compacted.PresentKeys[global], global, 0);
        Assert.Equal(16, kept.Length);
        Assert.Equal(Range(25, 5), kept[^5..]);
        Assert.DoesNotContain(kept[..^5], position => position % 3 == 0 && position < 25 && position > 12);
    }

    [Fact]
    public void ProtectingThePromptKeepsItAndCountsTheBudgetAfterIt()
    {
        var options = new KvCompressionOptions { Policy = "window", Budget = 16, Beta = 8, ProtectPrompt = true };
        Assert.Equal(26, options.KeepTokens(10));
        Assert.Equal(34, options.CapTokens(10));
        var compressor = new KvCompressor(Layout, new StreamingWindowPolicy(), options);
        var (keys, values) = Caches(34);
        using DecoderOutputs compacted = compressor.Compact(new KvRowSource(keys, values, 0, 34), compressor.CreateSlotMap(), 34, 10);
        int global = Enumerable.Range(0, Layout.Layers).First(layer => !Layout.IsTrimmed[layer]);
        Assert.Equal([.. Range(0, 10), .. Range(18, 16)], PositionsIn(compacted.PresentKeys[global], global, 0));
    }

    [Fact]
    public void PerLayerSelectionLetsLayersKeepDifferentTokens()
    {
        // Layer 1 prefers early tokens, layer 3 late ones (both global in the tiny preset).
        float Norm(int layer, int head, int position) => layer == 1 ? position * 1e5f : (30 - position) * 1e5f;
        var compressor = new KvCompressor(Layout, new KeyNormPolicy(), new KvCompressionOptions { Policy = "knorm", Budget = 16, Beta = 10, PerLayer = true });
        var (keys, values) = Caches(30, Norm);
        using DecoderOutputs compacted = compressor.Compact(new KvRowSource(keys, values, 0, 30), compressor.CreateSlotMap(), 30, 1);
        Assert.False(Layout.IsTrimmed[1] || Layout.IsTrimmed[3]);
        Assert.Equal(Range(0, 16), PositionsIn(compacted.PresentKeys[1], 1, 0));
        Assert.Equal(Range(14, 16), PositionsIn(compacted.PresentKeys[3], 3, 0));
    }

    [Theory]
    [InlineData("fifo", 64, 0, "policy")]
    [InlineData("window", 10, 0, "budget")]
    [InlineData("window", 64, 64, "protect_recent")]
    [InlineData("window", int.MaxValue, 0, "budget")]
    public void InvalidOptionsNameTheirField(string policy, int budget, int protectRecent, string field)
    {
        var options = new KvCompressionOptions { Policy = policy, Budget = budget, ProtectRecent = protectRecent };
        Assert.Equal(field, options.Validate(slidingSlots: 15)?.Field);
        Assert.Null((options with { Policy = "knorm", Budget = 64, ProtectRecent = 0 }).Validate(15));
    }
}
