using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>The paged rewrite of an Optimum-style folder: one PagedAttention per layer, and our tokens.</summary>
public sealed class OptimumAttentionMatchTests(TinyModelFixture serving, OptimumTinyModelFixture optimum)
    : IClassFixture<TinyModelFixture>, IClassFixture<OptimumTinyModelFixture>
{
    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900)];

    private ModelProto Rewritten() => PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(optimum.Model.OnnxPath), optimum.Config);

    [Fact]
    public void EachLayerBecomesOnePagedAttentionWithTheConfigsWindow()
    {
        GraphProto graph = Rewritten().Graph;
        var attention = graph.Node.Where(node => node.OpType == PagedAttentionRewrite.OpType).ToList();
        Assert.Equal(optimum.Config.NumHiddenLayers, attention.Count);
        for (int layer = 0; layer < attention.Count; layer++)
        {
            long window = optimum.Config.LayerKind(layer) == AttentionKind.Sliding ? optimum.Config.SlidingWindow : 0;
            Assert.Equal(window, PagedAttentionRewrite.IntAttribute(attention[layer], "sliding_window"));
        }

        Assert.DoesNotContain(graph.Node, node => node.OpType is "Softmax" or "Expand" || node.Input.Contains("attention_mask"));
        Assert.Equal(["input_ids", "position_ids"], graph.Input.Select(input => input.Name).Take(2));
        Assert.Equal(["logits"], graph.Output.Select(output => output.Name));
        Assert.Single(graph.Node, node => node.OpType == "Gather" && node.Input.Contains(PagedAttentionRewrite.LogitsIndices));
    }

    [Fact]
    public void PagedGreedyTokensAreOursPastTheWindow()
    {
        int[] prompt = Prompt(40, 5);
        var options = new GenerateOptions(20, StopAtEos: false);
        IReadOnlyList<int> expected = new Generator(serving.Model).Generate(prompt, options).TokenIds;
        Assert.Equal(expected, BatchOfOne.Generate(optimum.PagedModel, prompt, options).TokenIds);
    }

    [Fact]
    public void ASoftmaxOverTheWrongAxisIsRefusedNamingIt()
    {
        ModelProto model = OnnxModelFile.Load(optimum.Model.OnnxPath);
        NodeProto softmax = model.Graph.Node.Where(node => node.OpType == "Softmax").ElementAt(1);
        softmax.Attribute.First(a => a.Name == "axis").I = 2;
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(model, optimum.Config));
        Assert.Equal(softmax.Name, error.Node);
        Assert.Contains("Softmax over the keys", error.Message);
    }

    [Fact]
    public void AScaleOtherThanTheConfigsIsRefused()
    {
        var config = optimum.Config with { QueryPreAttnScalar = 4 * optimum.Config.QueryPreAttnScalar };
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(optimum.Model.OnnxPath), config));
        Assert.Contains("query_pre_attn_scalar", error.Message);
        Assert.Contains("layers.0/self_attn/Mul", error.Node);
    }
}
