using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// ONNX Runtime's GroupQueryAttention graphs (the onnx-community and genai styles), run as exported,
/// against the float64 reference over the same seeded weights.
/// </summary>
public sealed class Gemma3GqaGraphTests(TinyOnnxCommunityFixture onnxCommunity, TinyGenAiFixture genai)
    : IClassFixture<TinyOnnxCommunityFixture>, IClassFixture<TinyGenAiFixture>
{
    private Gemma3ModelFixture Fixture(Gemma3ExportStyle style) => style == Gemma3ExportStyle.GenAi ? genai : onnxCommunity;

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void PrefillPastTheWindowMatchesReferenceAtEveryPosition(Gemma3ExportStyle style)
    {
        Gemma3ModelFixture fixture = Fixture(style);
        int[] tokens = ReferenceLogits.Tokens(fixture.Config, 40, seed: 1);
        using var session = new KvSession(fixture.Model, batchSize: 1);
        DecoderOutputs outputs = session.Step([tokens]);
        double[][] expected = fixture.Reference.Forward(tokens);
        for (int s = 0; s < tokens.Length; s++)
        {
            ReferenceLogits.AssertClose(expected[s], outputs.Logits(0, s), $"{style} position {s}");
        }
    }

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void DecodeStepsThroughTheCacheMatchReference(Gemma3ExportStyle style)
    {
        Gemma3ModelFixture fixture = Fixture(style);
        var tokens = ReferenceLogits.Tokens(fixture.Config, 10, seed: 2).ToList();
        using var session = new KvSession(fixture.Model, batchSize: 1);
        DecoderOutputs outputs = session.Step([[.. tokens]]);
        for (int step = 0; step < 12; step++)
        {
            int next = SequenceSampler.ArgMax(outputs.Logits(0, outputs.LogitPositions - 1));
            tokens.Add(next);
            outputs = session.Step([[next]]);
            ReferenceLogits.AssertClose(fixture.Reference.Forward(tokens)[^1], outputs.Logits(0, 0), $"{style} decode step {step}");
        }
    }
}
