using Serving.Runtime.Models;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>The row Gather that stands in for num_logits_to_keep in graphs without it (the Optimum style's).</summary>
public sealed class LogitsRowSelectionTests(OptimumTinyModelFixture optimum) : IClassFixture<OptimumTinyModelFixture>
{
    [Fact]
    public void EveryReaderOfTheFinalHiddenStateReadsTheGather()
    {
        GraphProto graph = OnnxModelFile.Load(optimum.Model.OnnxPath).Graph;
        NodeProto head = graph.Node.Single(node => node.Output.Contains("logits"));
        string hidden = head.Input[0];
        LogitsRowSelection.Insert(graph, "logits", "rows");

        NodeProto gather = graph.Node.Single(node => node.OpType == "Gather" && node.Input.SequenceEqual([hidden, "rows"]));
        Assert.Equal(1, PagedAttentionRewrite.IntAttribute(gather, "axis"));
        Assert.Equal(gather.Output[0], head.Input[0]);
        Assert.Single(graph.Node, node => node.Input.Contains(hidden));
        Assert.True(graph.Node.IndexOf(gather) < graph.Node.IndexOf(head));
    }

    [Fact]
    public void LogitsThatDoNotComeFromAHeadAreRefusedNamingTheNode()
    {
        // A final soft-cap (Gemma 2's tanh) between the head and the output: a Gather before it would still be right,
        // but the walk cannot know what an arbitrary op does to rows, so it refuses.
        GraphProto graph = OnnxModelFile.Load(optimum.Model.OnnxPath).Graph;
        NodeProto head = graph.Node.Single(node => node.Output.Contains("logits"));
        head.Output[0] = "uncapped";
        var tanh = new NodeProto { Name = "/lm_head/Tanh", OpType = "Tanh" };
        tanh.Input.Add("uncapped");
        tanh.Output.Add("logits");
        graph.Node.Add(tanh);
        var error = Assert.Throws<PagedRewriteException>(() => LogitsRowSelection.Insert(graph, "logits", "rows"));
        Assert.Equal("/lm_head/Tanh", error.Node);
        Assert.Contains("not a Tanh", error.Message);
    }
}
