using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// The Optimum-style graph against ours over the same weights (seed 7, tiny preset), through the
/// unpaged loader and the single-sequence generator: a 40-token prompt crosses the 16-token
/// window twice, so sliding layers keeping every token must still see only the window.
/// </summary>
public sealed class Gemma3OptimumGraphTests(TinyModelFixture serving, OptimumTinyModelFixture optimum)
    : IClassFixture<TinyModelFixture>, IClassFixture<OptimumTinyModelFixture>
{
    private const double Tolerance = 1e-4;

    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900)];

    [Fact]
    public void EveryLayerTakesTheWholePastAndThereIsNoLogitsCount()
    {
        DecoderSignature signature = optimum.Model.Signature;
        Assert.Null(signature.NumLogitsToKeep);
        Assert.Equal(("attention_mask", "position_ids"), (signature.AttentionMask, signature.PositionIds));
        Assert.All(signature.Layers, layer => Assert.False(layer.HasOwnLength));
        Assert.Equal(["input_ids", "attention_mask", "position_ids", "past_key_values.0.key"], optimum.Model.Session.InputNames.Take(4));
        Assert.Equal(Gemma3OptimumGraph.TotalLength, optimum.Model.Session.OutputMetadata["present.1.key"].SymbolicDimensions[2]);
    }

    [Fact]
    public void A40TokenPromptGivesOurLogitsAtEveryPosition()
    {
        int[] prompt = Prompt(40, 1);
        using var ours = new KvSession(serving.Model, batchSize: 1);
        using var theirs = new KvSession(optimum.Model, batchSize: 1);
        DecoderOutputs expected = ours.Step([prompt]);
        DecoderOutputs actual = theirs.Step([prompt]);
        Assert.Equal(prompt.Length, actual.LogitPositions);
        for (int s = 0; s < prompt.Length; s++)
        {
            AssertClose(expected.Logits(0, s), actual.Logits(0, s), $"position {s}");
        }
    }

    [Fact]
    public void ChunksThroughTheWholeCacheMatchTheFloat64Reference()
    {
        int[] prompt = Prompt(40, 2);
        using var session = new KvSession(optimum.Model, batchSize: 1);
        session.Step([prompt[..25]]);
        DecoderOutputs outputs = session.Step([prompt[25..]]);
        Assert.Equal(40, session.CacheLength(0));
        double[][] reference = optimum.Reference.Forward(prompt);
        for (int s = 0; s < 15; s++)
        {
            double[] row = reference[25 + s];
            AssertClose([.. row.Select(v => (float)v)], outputs.Logits(0, s), $"position {25 + s}");
        }
    }

    [Fact]
    public void GreedyContinuationOfA40TokenPromptIsOurs()
    {
        int[] prompt = Prompt(40, 3);
        var options = new GenerateOptions(24, StopAtEos: false);
        IReadOnlyList<int> expected = new Generator(serving.Model).Generate(prompt, options).TokenIds;
        Assert.Equal(expected, new Generator(optimum.Model).Generate(prompt, options).TokenIds);
    }

    [Fact]
    public void TheGemmaLayoutWithOneKvHeadGivesOurTokensUnpagedAndPaged()
    {
        using var ours = new GemmaShapedModelFixture();
        using var theirs = new OptimumGemmaShapedModelFixture();
        int[] prompt = Prompt(30, 4);
        var options = new GenerateOptions(12, StopAtEos: false);
        IReadOnlyList<int> expected = new Generator(ours.Model).Generate(prompt, options).TokenIds;
        Assert.Equal(expected, new Generator(theirs.Model).Generate(prompt, options).TokenIds);
        Assert.Equal(expected, BatchOfOne.Generate(theirs.PagedModel, prompt, options).TokenIds);
    }

    /// <summary>max |a − b| over a row, against 1e-4 of the row's largest magnitude (at least 1).</summary>
    private static void AssertClose(ReadOnlySpan<float> expected, ReadOnlySpan<float> actual, string what)
    {
        double worst = 0, scale = 1;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }

        Assert.True(worst <= Tolerance * scale, $"{what}: max difference {worst:E2} > {Tolerance:E0} × {scale:F2}");
    }
}
