using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;

namespace Serving.Runtime.Models;

/// <summary>
/// For graphs without <c>num_logits_to_keep</c> (GroupQueryAttention and Optimum exports): the LM head
/// would compute a row of logits per packed token (a 512-token prefill of a 262k vocabulary: 537 MB), so
/// the final hidden state <c>[1, T, H]</c> is narrowed to the rows in <paramref name="indices"/> first.
/// </summary>
internal static class LogitsRowSelection
{
    private static readonly HashSet<string> PassThrough = ["Reshape", "Cast", "Identity"];
    private static readonly HashSet<string> Heads = ["Gemm", "MatMul", "MatMulNBits"];

    /// <summary>
    /// Walks back from <paramref name="logits"/> through Reshape/Cast/Identity to the head (Gemm, MatMul or
    /// MatMulNBits), then from its activation back through Reshapes to the 3-D hidden state, and makes every
    /// reader of that value read <c>Gather(hidden, indices, axis = 1)</c> instead.
    /// </summary>
    public static void Insert(GraphProto graph, string logits, string indices)
    {
        NodeProto head = Producer(graph, logits, logits);
        while (PassThrough.Contains(head.OpType) && head.Domain.Length == 0)
        {
            head = Producer(graph, head.Input[0], head.Name);
        }

        if (!Heads.Contains(head.OpType))
        {
            throw new PagedRewriteException(head.Name, $"'{logits}' must come from a Gemm, MatMul or MatMulNBits head (through Reshape/Cast), found a {head.OpType}");
        }

        string hidden = head.Input[0];
        while (GraphEdits.Producer(graph, hidden) is { OpType: "Reshape", Domain: "" } flatten)
        {
            hidden = flatten.Input[0];
        }

        var gather = new NodeProto { Name = "/model/paged_logits_rows/Gather", OpType = "Gather" };
        gather.Input.AddRange([hidden, indices]);
        gather.Output.Add(gather.Name + "_output_0");
        gather.Attribute.Add(Attr("axis", 1L));
        foreach (NodeProto reader in graph.Node)
        {
            for (int i = 0; i < reader.Input.Count; i++)
            {
                if (reader.Input[i] == hidden)
                {
                    reader.Input[i] = gather.Output[0];
                }
            }
        }

        NodeProto? producer = GraphEdits.Producer(graph, hidden);
        graph.Node.Insert(producer is null ? 0 : graph.Node.IndexOf(producer) + 1, gather);
    }

    private static NodeProto Producer(GraphProto graph, string value, string reader) =>
        GraphEdits.Producer(graph, value) ?? throw new PagedRewriteException(reader, $"no node produces '{value}'");
}
