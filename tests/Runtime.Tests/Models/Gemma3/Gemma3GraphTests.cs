using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

public sealed class TinyGraphTests(TinyModelFixture fixture) : Gemma3GraphTests<TinyModelFixture>(fixture);

public sealed class GemmaShapedGraphTests(GemmaShapedModelFixture fixture) : Gemma3GraphTests<GemmaShapedModelFixture>(fixture);

/// <summary>ONNX Runtime on our Gemma 3 graph against the float64 reference over the same weights.</summary>
/// <summary>Random prompts and the tolerance every graph-against-reference test uses.</summary>
internal static class ReferenceLogits
{
    private const double Tolerance = 1e-4;

    public static int[] Tokens(Gemma3Config config, int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => random.Next(10, config.VocabSize))];
    }

    /// <summary>max |a − b| / max |b| over one row of logits.</summary>
    public static void AssertClose(double[] expected, ReadOnlySpan<float> actual, string what)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }

        Assert.True(worst / scale < Tolerance, $"{what}: relative error {worst / scale:E2} ≥ {Tolerance:E0}");
    }
}

public abstract class Gemma3GraphTests<TFixture>(TFixture fixture) : IClassFixture<TFixture>
    where TFixture : Gemma3ModelFixture
{
    private Gemma3Config Config => fixture.Config;

    private int[] Tokens(int count, int seed) => ReferenceLogits.Tokens(Config, count, seed);

    private static void AssertClose(double[] expected, ReadOnlySpan<float> actual, string what) => ReferenceLogits.AssertClose(expected, actual, what);

    [Fact]
    public void PrefillMatchesReferenceAtEveryPosition()
    {
        int[] tokens = Tokens(12, seed: 1);
        using var session = new KvSession(fixture.Model, batchSize: 1);
        DecoderOutputs outputs = session.Step([tokens]);
        double[][] expected = fixture.Reference.Forward(tokens);
        for (int s = 0; s < tokens.Length; s++)
        {
            AssertClose(expected[s], outputs.Logits(0, s), $"position {s}");
        }
    }

    [Fact]
    public void SixteenDecodeStepsThroughTheCacheMatchReference()
    {
        var tokens = Tokens(5, seed: 2).ToList();
        using var session = new KvSession(fixture.Model, batchSize: 1);
        DecoderOutputs outputs = session.Step([[.. tokens]]);
        for (int step = 0; step < 16; step++)
        {
            int next = SequenceSampler.ArgMax(outputs.Logits(0, outputs.LogitPositions - 1));
            tokens.Add(next);
            outputs = session.Step([[next]]);
            AssertClose(fixture.Reference.Forward(tokens)[^1], outputs.Logits(0, 0), $"decode step {step}");
        }
    }

    [Fact]
    public void LeftPaddedBatchOfDifferentLengthsMatchesReference()
    {
        int[][] prompts = [Tokens(7, seed: 3), Tokens(12, seed: 4)];
        using var session = new KvSession(fixture.Model, batchSize: 2);
        var sequences = prompts.Select(p => p.ToList()).ToArray();
        DecoderOutputs outputs = session.Step(prompts);
        for (int b = 0; b < 2; b++)
        {
            double[][] expected = fixture.Reference.Forward(prompts[b]);
            int padding = 12 - prompts[b].Length;
            for (int s = 0; s < prompts[b].Length; s++)
            {
                AssertClose(expected[s], outputs.Logits(b, padding + s), $"sequence {b} position {s}");
            }
        }

        for (int step = 0; step < 6; step++)
        {
            int[][] next = [.. Enumerable.Range(0, 2).Select(b => new[] { SequenceSampler.ArgMax(outputs.Logits(b, outputs.LogitPositions - 1)) })];
            outputs = session.Step(next);
            for (int b = 0; b < 2; b++)
            {
                sequences[b].Add(next[b][0]);
                AssertClose(fixture.Reference.Forward(sequences[b])[^1], outputs.Logits(b, 0), $"sequence {b} step {step}");
            }
        }
    }

    [Fact]
    public void SequencesLongerThanTheWindowMatchReferenceInChunksAndSteps()
    {
        int[] chunks = [7, 20, 1, 1, 5, 1, 13];
        int[] tokens = Tokens(chunks.Sum(), seed: 5);
        Assert.True(tokens.Length > 2 * Config.SlidingWindow);
        using var session = new KvSession(fixture.Model, batchSize: 1);
        int done = 0;
        foreach (int chunk in chunks)
        {
            DecoderOutputs outputs = session.Step([tokens[done..(done + chunk)]]);
            done += chunk;
            double[][] expected = fixture.Reference.Forward(tokens[..done]);
            for (int s = 0; s < chunk; s++)
            {
                AssertClose(expected[done - chunk + s], outputs.Logits(0, s), $"token {done - chunk + s}");
            }
        }

        Assert.Equal(tokens.Length, done);
        foreach (var layer in fixture.Model.Signature.Layers)
        {
            long cached = session.CacheLength(layer.Index);
            Assert.Equal(layer.Kind == AttentionKind.Sliding ? Config.SlidingWindow - 1 : tokens.Length, cached);
        }
    }

    [Fact]
    public void ShiftingAllPositionsByAConstantChangesNothing()
    {
        int[] tokens = Tokens(2 * Config.SlidingWindow, seed: 6);
        using var zeroBased = new KvSession(fixture.Model, batchSize: 1);
        using var oneBased = new KvSession(fixture.Model, batchSize: 1, firstPosition: 1);
        DecoderOutputs a = zeroBased.Step([tokens]);
        DecoderOutputs b = oneBased.Step([tokens]);
        for (int s = 0; s < tokens.Length; s++)
        {
            double[] expected = [.. a.Logits(0, s).ToArray().Select(v => (double)v)];
            AssertClose(expected, b.Logits(0, s), $"position {s}");
        }
    }

    [Fact]
    public void PaddedRowDecodesLikeTheSequenceAlone()
    {
        // The shorter prompt of a batch keeps padding slots in every cache, global and
        // sliding; decoding it must match running it alone.
        int[][] prompts = [Tokens(4, seed: 8), Tokens(9, seed: 9)];
        using var padded = new KvSession(fixture.Model, batchSize: 2);
        using var compacted = new KvSession(fixture.Model, batchSize: 1);
        padded.Step(prompts);
        compacted.Step([prompts[0]]);

        int[] next = Tokens(1, seed: 10);
        DecoderOutputs fromPadded = padded.Step([next, next]);
        DecoderOutputs fromCompacted = compacted.Step([next]);
        double[] expected = [.. fromCompacted.Logits(0, 0).ToArray().Select(v => (double)v)];
        AssertClose(expected, fromPadded.Logits(0, 0), "padded vs alone");
        AssertClose(fixture.Reference.Forward([.. prompts[0], next[0]])[^1], fromPadded.Logits(0, 0), "reference");
    }

    [Fact]
    public void GlobalLayersReadPositionsNotSlotIndices()
    {
        // Dropping old global slots (as KV eviction will) must equal masking them out: the
        // slots left behind keep their true RoPE positions although their indices shift.
        int length = 2 * Config.SlidingWindow;
        int[] tokens = Tokens(length, seed: 11);
        int[] evicted = [3, 4, 5, 6, 7, 8];
        int[] next = Tokens(1, seed: 12);
        using var masked = new KvSession(fixture.Model, batchSize: 1);
        using var dropped = new KvSession(fixture.Model, batchSize: 1);
        masked.Step([tokens]);
        dropped.Step([tokens]);
        masked.MaskSlots(evicted);
        dropped.DropGlobalSlots(evicted);

        DecoderOutputs fromMasked = masked.Step([next]);
        DecoderOutputs fromDropped = dropped.Step([next]);
        double[] expected = [.. fromMasked.Logits(0, 0).ToArray().Select(v => (double)v)];
        AssertClose(expected, fromDropped.Logits(0, 0), "dropped vs masked");
        Assert.Equal(length + 1 - evicted.Length, dropped.CacheLength(Config.SlidingWindowPattern - 1));
        double[] full = fixture.Reference.Forward([.. tokens, next[0]])[^1];
        Assert.True(MaxDifference(full, fromDropped.Logits(0, 0)) > 1e-3, "evicting tokens should change the output");
    }

    private static double MaxDifference(double[] expected, ReadOnlySpan<float> actual)
    {
        double worst = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
        }

        return worst;
    }

    [Fact]
    public void NumLogitsToKeepReturnsTheLastRowsOnly()
    {
        int[] tokens = Tokens(9, seed: 13);
        using var runner = new ModelRunner(fixture.Model);
        int layers = Config.NumHiddenLayers;
        var empty = Enumerable.Range(0, 2 * layers).Select(_ => runner.EmptyPast(1)).ToArray();
        var batch = new DecoderBatch(1, tokens.Length, tokens.Select(t => (long)t).ToArray(), Enumerable.Repeat(1L, tokens.Length).ToArray(),
            Enumerable.Range(0, tokens.Length).Select(i => (long)i).ToArray(), empty[..layers], empty[layers..]);
        using DecoderOutputs all = runner.Run(batch);
        using DecoderOutputs last = runner.Run(batch with { LastLogitsOnly = true });

        Assert.Equal(tokens.Length, all.LogitPositions);
        Assert.Equal(1, last.LogitPositions);
        Assert.Equal(all.Logits(0, tokens.Length - 1).ToArray(), last.Logits(0, 0).ToArray());
        foreach (var value in empty)
        {
            value.Dispose();
        }
    }

    /// <summary>transformers.js feeds num_logits_to_keep as a scalar, ONNX Runtime GenAI as [1]: both keep the last row.</summary>
    [Fact]
    public void NumLogitsToKeepTakesAScalarOrAOneElementVector()
    {
        long[] ids = [.. Tokens(5, seed: 17).Select(t => (long)t)];
        float[] LastRows(long[] keepShape)
        {
            var feeds = new Dictionary<string, OrtValue>
            {
                ["input_ids"] = OrtValue.CreateTensorValueFromMemory(ids, [1, ids.Length]),
                ["attention_mask"] = OrtValue.CreateTensorValueFromMemory(ids.Select(_ => 1L).ToArray(), [1, ids.Length]),
                ["position_ids"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, ids.Length).Select(p => (long)p).ToArray(), [1, ids.Length]),
                ["num_logits_to_keep"] = OrtValue.CreateTensorValueFromMemory(new long[] { 1 }, keepShape),
            };
            for (int layer = 0; layer < Config.NumHiddenLayers; layer++)
            {
                foreach (string name in (string[])[DecoderNames.PastKeyOf(layer), DecoderNames.PastValueOf(layer)])
                {
                    feeds[name] = OrtValue.CreateTensorValueFromMemory(Array.Empty<float>(), [1, Config.NumKeyValueHeads, 0, Config.HeadDim]);
                }
            }

            try
            {
                using var outputs = fixture.Model.Session.Run(new RunOptions(), feeds.Keys.ToList(), feeds.Values.ToList(), ["logits"]);
                Assert.Equal([1L, 1, Config.VocabSize], outputs[0].GetTensorTypeAndShape().Shape);
                return outputs[0].GetTensorDataAsSpan<float>().ToArray();
            }
            finally
            {
                foreach (OrtValue value in feeds.Values)
                {
                    value.Dispose();
                }
            }
        }

        Assert.Equal(LastRows([]), LastRows([1]));
    }

    [Fact]
    public void RunnerRefusesASlidingCacheLongerThanTheGlobalOne()
    {
        // 20 tokens, then drop global slots until fewer remain than the window − 1 sliding ones.
        int[] tokens = Tokens(20, seed: 14);
        using var session = new KvSession(fixture.Model, batchSize: 1);
        session.Step([tokens]);
        session.DropGlobalSlots([.. Enumerable.Range(0, tokens.Length - Config.SlidingWindow + 2)]);
        var error = Assert.Throws<ArgumentException>(() => session.Step([[5]]));
        Assert.Contains("a sliding cache cannot outlive the global one", error.Message);
    }

    [Fact]
    public void RunnerRefusesBuffersOfTheWrongSize()
    {
        using var runner = new ModelRunner(fixture.Model);
        int layers = Config.NumHiddenLayers;
        var empty = Enumerable.Range(0, 2 * layers).Select(_ => runner.EmptyPast(2)).ToArray();
        var good = new DecoderBatch(2, 3, new long[6], new long[6], new long[6], empty[..layers], empty[layers..]);
        Assert.Throws<ArgumentException>(() => runner.Run(good with { InputIds = new long[5] }));
        Assert.Throws<ArgumentException>(() => runner.Run(good with { AttentionMask = new long[7] }));
        Assert.Throws<ArgumentException>(() => runner.Run(good with { AttentionMask = new long[8] }));
        Assert.Throws<ArgumentException>(() => runner.Run(good with { PastKeys = empty[..1] }));
        foreach (var value in empty)
        {
            value.Dispose();
        }
    }

    [Fact]
    public void QueryTapBeforeRopeIsAnOutputCalibrationCanExpose()
    {
        using var folder = new TempFolder();
        var model = Serving.Runtime.Onnx.OnnxModelFile.Load(Path.Combine(fixture.Folder, Gemma3ModelWriter.OnnxFile));
        string tap = Gemma3Attention.QueryPreRopeName(1);
        Serving.Runtime.Onnx.GraphEdits.AddOutput(model.Graph, tap, Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType.Float);
        string path = folder.File("tapped.onnx");
        Serving.Runtime.Onnx.OnnxModelFile.Save(model, path, sourceDirectory: Path.Combine(fixture.Folder, "onnx"));

        using var session = new InferenceSession(path);
        Assert.Equal([-1, -1, Config.NumAttentionHeads, Config.HeadDim], session.OutputMetadata[tap].Dimensions);
    }
}
