using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Quantization;

namespace Serving.Runtime.Tests.Quantization;

/// <summary>q4 of an Optimum-style folder, whose tied head is the traced <c>MatMul(h, Transpose(E))</c>.</summary>
public sealed class QuantizeRewriteTests
{
    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900)];

    [Fact]
    public void TheOptimumStylesTracedHeadReadsThePackedEmbeddingAndThePagedQ4LoadGenerates()
    {
        using var folder = new TempFolder();
        Gemma3ModelWriter.WriteRandom(folder.Path, Gemma3Presets.Tiny, seed: 7, style: Gemma3ExportStyle.Optimum);
        Quantizer.AddVariant(folder.Path, "q4");

        GraphProto graph = OnnxModelFile.Load(folder.File("onnx/model_q4.onnx")).Graph;
        Assert.Equal("MatMulNBits", graph.Node.Single(node => node.Output.Contains("logits")).OpType);
        Assert.DoesNotContain(graph.Node, node => node.Input.Contains(Gemma3Weights.Embedding));
        Assert.DoesNotContain(graph.Node, node => node.OpType == "MatMul" && node.Domain.Length == 0
            && node.Input.Any(input => input.EndsWith(".weight", StringComparison.Ordinal)));

        using var unpaged = DecoderModel.Load(folder.Path, new DecoderLoadOptions { Dtype = "q4" });
        using var paged = DecoderModel.Load(folder.Path, new DecoderLoadOptions { Dtype = "q4", PagedAttention = true });
        int[] prompt = Prompt(40, 9);
        var options = new GenerateOptions(16, StopAtEos: false);
        IReadOnlyList<int> expected = new Generator(unpaged).Generate(prompt, options).TokenIds;
        Assert.Equal(expected, BatchOfOne.Generate(paged, prompt, options).TokenIds);
    }
}
