using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;

namespace Serving.Runtime.Models;

/// <summary>
/// Logits for chosen rows only, in graphs without <c>num_logits_to_keep</c> (Optimum's, GroupQueryAttention
/// exports): <c>Gather(h, indices, axis = 1)</c> on the final hidden state <c>[B, S, H]</c> before the LM
/// head, so that a packed prefill of T tokens projects one row per sequence onto the vocabulary instead
/// of T rows (a 512-token prefill of a 262k vocabulary: 537 MB of logits otherwise).
/// </summary>
internal static class LogitsRowSelection
{
    /// <summary>Ops the walk from the logits output back to the head passes through unchanged.</summary>
    private static readonly HashSet<string> PassThrough = ["Reshape", "Cast", "Identity"];

    private static readonly HashSet<string> Heads = ["Gemm", "MatMul", "MatMulNBits"];

    /// <summary>
    /// Walks back from <paramref name="logits"/> through Reshape, Cast and Identity to the Gemm, MatMul or
    /// MatMulNBits head, then from the head's activation input back through Reshape, Cast and Identity
    /// (a Gemm head reads <c>[B·S, H]</c>) to the hidden state, and makes every reader of that value
    /// read <c>Gather(h, <paramref name="indices"/>, axis = 1)</c> instead (a Shape of h then gives
    /// the selected row count, as the logits' final Reshape needs).
    /// </summary>
    /// <exception cref="PagedRewriteException">The logits do not come from such a head.</exception>
    public static void Insert(GraphProto graph, string logits, string indices)
    {
        NodeProto head = WalkBack(graph, logits, "the logits output");
        if (!Heads.Contains(head.OpType))
        {
            throw new PagedRewriteException(head.Name,
                $"the logits must come from a Gemm, MatMul or MatMulNBits LM head through Reshape, Cast or Identity, not a {head.OpType}");
        }

        string hidden = head.Input[0];
        while (GraphEdits.Producer(graph, hidden) is { } producer && PassThrough.Contains(producer.OpType))
        {
            hidden = producer.Input[0];
        }

        NodeProto hiddenProducer = GraphEdits.Producer(graph, hidden)
            ?? throw new PagedRewriteException(head.Name, $"its activation '{hidden}' must be computed by the graph, not be an input or initializer");
        var gather = new NodeProto { Name = hiddenProducer.Name + "/logits_rows/Gather", OpType = "Gather" };
        gather.Input.AddRange([hidden, indices]);
        gather.Output.Add(gather.Name + "/output_0");
        gather.Attribute.Add(Attr("axis", 1L));
        foreach (NodeProto node in graph.Node)
        {
            for (int i = 0; i < node.Input.Count; i++)
            {
                if (node.Input[i] == hidden)
                {
                    node.Input[i] = gather.Output[0];
                }
            }
        }

        graph.Node.Insert(graph.Node.IndexOf(hiddenProducer) + 1, gather);
    }

    /// <summary>The producer of <paramref name="value"/>, past any Reshape, Cast or Identity.</summary>
    private static NodeProto WalkBack(GraphProto graph, string value, string what)
    {
        NodeProto node = GraphEdits.Producer(graph, value) ?? throw new PagedRewriteException(value, $"{what} must be computed by the graph");
        while (PassThrough.Contains(node.OpType))
        {
            node = GraphEdits.Producer(graph, node.Input[0]) ?? throw new PagedRewriteException(node.Name, "its input must be computed by the graph");
        }

        return node;
    }
}
