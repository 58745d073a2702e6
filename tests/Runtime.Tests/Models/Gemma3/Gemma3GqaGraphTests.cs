using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// ONNX Runtime's GroupQueryAttention graphs (the onnx-community and genai styles), run as exported,
/// against the float64 reference over the same seeded weights.
/// </summary>
public sealed class Gemma3GqaGraphTests
{
    private const double Tolerance = 1e-4;
    private const ulong Seed = 7;

    private static readonly Gemma3Config Config = Gemma3Presets.Tiny;

    private static readonly Gemma3Reference Reference = new(Config,
        Gemma3Weights.Specs(Config).ToDictionary(spec => spec.Name, spec => Gemma3Weights.Random(spec, Seed)));

    private static int[] Tokens(int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => random.Next(10, Config.VocabSize))];
    }

    private static void AssertClose(double[] expected, ReadOnlySpan<float> actual, string what)
    {
        double worst = 0, scale = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]));
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }

        Assert.True(worst / scale < Tolerance, $"{what}: relative error {worst / scale:E2} ≥ {Tolerance:E0}");
    }

    private static DecoderModel Write(TempFolder folder, Gemma3ExportStyle style)
    {
        Gemma3ModelWriter.WriteRandom(folder.Path, Config, Seed, style: style);
        return DecoderModel.Load(folder.Path);
    }

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void PrefillPastTheWindowMatchesReferenceAtEveryPosition(Gemma3ExportStyle style)
    {
        using var folder = new TempFolder();
        using DecoderModel model = Write(folder, style);
        int[] tokens = Tokens(40, seed: 1);
        using var session = new KvSession(model, batchSize: 1);
        DecoderOutputs outputs = session.Step([tokens]);
        double[][] expected = Reference.Forward(tokens);
        for (int s = 0; s < tokens.Length; s++)
        {
            AssertClose(expected[s], outputs.Logits(0, s), $"{style} position {s}");
        }
    }

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void DecodeStepsThroughTheCacheMatchReference(Gemma3ExportStyle style)
    {
        using var folder = new TempFolder();
        using DecoderModel model = Write(folder, style);
        var tokens = Tokens(10, seed: 2).ToList();
        using var session = new KvSession(model, batchSize: 1);
        DecoderOutputs outputs = session.Step([[.. tokens]]);
        for (int step = 0; step < 12; step++)
        {
            int next = SequenceSampler.ArgMax(outputs.Logits(0, outputs.LogitPositions - 1));
            tokens.Add(next);
            outputs = session.Step([[next]]);
            AssertClose(Reference.Forward(tokens)[^1], outputs.Logits(0, 0), $"{style} decode step {step}");
        }
    }
}
