using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>
/// GroupQueryAttention exports (onnx-community, GenAI) rewritten for the paged KV cache: the same
/// greedy tokens as the export run as it is, and as our own graph over the same weights.
/// </summary>
public sealed class GroupQueryAttentionRewriteTests(TinyModelFixture serving, TinyOnnxCommunityFixture onnxCommunity, TinyGenAiFixture genai)
    : IClassFixture<TinyModelFixture>, IClassFixture<TinyOnnxCommunityFixture>, IClassFixture<TinyGenAiFixture>
{
    private static int[] Prompt(int length, int salt) => Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900).ToArray();

    private Gemma3ModelFixture Fixture(Gemma3ExportStyle style) => style == Gemma3ExportStyle.GenAi ? genai : onnxCommunity;

    private static int[] Greedy(DecoderModel model, int[] prompt, int maxTokens) =>
        [.. new Generator(model).Generate(prompt, new GenerateOptions(maxTokens, StopAtEos: false)).TokenIds];

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void PagedEngineGivesTheExportsOwnTokensPastTheWindow(Gemma3ExportStyle style)
    {
        Gemma3ModelFixture fixture = Fixture(style);
        int[] prompt = Prompt(37, 1);
        int[] expected = Greedy(fixture.Model, prompt, 12);
        using Engine engine = BatchOfOne.CreateEngine(fixture.PagedModel, 64);
        Assert.Equal(expected, BatchOfOne.Generate(engine, prompt, new GenerateOptions(12, StopAtEos: false)).TokenIds);
        Assert.Equal(Greedy(serving.Model, prompt, 12), expected);
    }

    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void EveryAttentionBecomesPagedWithExplicitPositions(Gemma3ExportStyle style)
    {
        Gemma3ModelFixture fixture = Fixture(style);
        ModelProto rewritten = PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(fixture.Model.OnnxPath), fixture.Config);
        Assert.DoesNotContain(rewritten.Graph.Node, node => node.OpType == Gemma3GqaGraph.AttentionOp);
        Assert.Equal(fixture.Config.NumHiddenLayers, rewritten.Graph.Node.Count(node => node.OpType == PagedAttentionRewrite.OpType));
        Assert.Contains(rewritten.Graph.Input, input => input.Name == "position_ids");
        Assert.DoesNotContain(rewritten.Graph.Input, input => input.Name == "attention_mask" || input.Name.StartsWith("past_key_values", StringComparison.Ordinal));
        Assert.Contains(rewritten.Graph.Input, input => input.Name == PagedAttentionRewrite.LogitsIndices);
    }

    [Fact]
    public void GenAisPackedProjectionFusesItsNormsAndRotaryIntoOneOp()
    {
        ModelProto rewritten = PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(genai.Model.OnnxPath), genai.Config, modelDirectory: genai.Folder + "/onnx");
        Assert.Equal(genai.Config.NumHiddenLayers, rewritten.Graph.Node.Count(node => node.OpType == DecoderFusions.QkNormRopeOp));
        Assert.DoesNotContain(rewritten.Graph.Node, node => node.OpType == "RotaryEmbedding");
    }

    [Fact]
    public void AWindowThatDisagreesWithTheConfigIsRefusedNamingTheNodeAndField()
    {
        ModelProto model = OnnxModelFile.Load(onnxCommunity.Model.OnnxPath);
        NodeProto gqa = model.Graph.Node.First(node => node.OpType == Gemma3GqaGraph.AttentionOp);
        gqa.Attribute.First(a => a.Name == "local_window_size").I = 5;
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(model, onnxCommunity.Config));
        Assert.Equal(gqa.Name, error.Node);
        Assert.Contains("local_window_size = 5", error.Message);
    }

    [Fact]
    public void SoftcapIsRefused()
    {
        ModelProto model = OnnxModelFile.Load(genai.Model.OnnxPath);
        NodeProto gqa = model.Graph.Node.Last(node => node.OpType == Gemma3GqaGraph.AttentionOp);
        gqa.Attribute.First(a => a.Name == "softcap").F = 50f;
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(model, genai.Config));
        Assert.Equal(gqa.Name, error.Node);
        Assert.Contains("softcap", error.Message);
    }
}

/// <summary>The 4-bit variant of each GroupQueryAttention style: quantized as ours, served paged with the export's own tokens.</summary>
public sealed class GroupQueryAttentionQuantizedTests
{
    [Theory]
    [InlineData(Gemma3ExportStyle.OnnxCommunity)]
    [InlineData(Gemma3ExportStyle.GenAi)]
    public void TheQ4VariantServesPagedWithItsOwnTokens(Gemma3ExportStyle style)
    {
        using var folder = new TempFolder();
        Gemma3ModelWriter.WriteRandom(folder.Path, Gemma3Presets.Tiny, 5, style: style);
        Serving.Runtime.Quantization.Quantizer.AddVariant(folder.Path, "q4");
        using DecoderModel unpaged = DecoderModel.Load(folder.Path, new DecoderLoadOptions { Dtype = "q4" });
        using DecoderModel paged = DecoderModel.Load(folder.Path, new DecoderLoadOptions { Dtype = "q4", PagedAttention = true });
        ModelProto graph = OnnxModelFile.Load(unpaged.OnnxPath);
        Assert.Contains(graph.Graph.Node, node => node.OpType == Gemma3GqaGraph.AttentionOp);
        // Every projection is 4-bit, GenAI's packed q/k/v included (its "attn/qkv_proj" names once escaped the quantizer).
        Assert.Equal(7 * Gemma3Presets.Tiny.NumHiddenLayers + 1, graph.Graph.Node.Count(node => node.OpType == "MatMulNBits")
            + (style == Gemma3ExportStyle.GenAi ? 2 * Gemma3Presets.Tiny.NumHiddenLayers : 0));
        Assert.DoesNotContain(graph.Graph.Node, node => node.OpType == "MatMul" && graph.Graph.Initializer.Any(t => t.Name == node.Input[1]));

        int[] prompt = [.. Enumerable.Range(0, 30).Select(i => 7 + i * 29 % 900)];
        int[] expected = [.. new Generator(unpaged).Generate(prompt, new GenerateOptions(10, StopAtEos: false)).TokenIds];
        using Engine engine = BatchOfOne.CreateEngine(paged, 48);
        Assert.Equal(expected, BatchOfOne.Generate(engine, prompt, new GenerateOptions(10, StopAtEos: false)).TokenIds);
    }
}

/// <summary>Exports whose caches are float16 (onnx-community's fp16 and q4f16 files) are refused by name.</summary>
public sealed class HalfPrecisionCacheRefusalTests(TinyOnnxCommunityFixture fixture) : IClassFixture<TinyOnnxCommunityFixture>
{
    [Fact]
    public void AFloat16CacheIsRefusedNamingTheInputAndTheFix()
    {
        ModelProto model = OnnxModelFile.Load(fixture.Model.OnnxPath);
        model.Graph.Input.First(input => input.Name == DecoderNames.PastKeyOf(0)).Type.TensorType.ElemType = (int)TensorProto.Types.DataType.Float16;
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(model, fixture.Config));
        Assert.Equal(DecoderNames.PastKeyOf(0), error.Node);
        Assert.Contains("Float16", error.Message);
        Assert.Contains("fp32, q8 or q4", error.Message);
    }
}
