using System.Runtime.InteropServices;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models;

/// <summary>
/// What a matcher hands <see cref="PagedAttentionRewrite"/> for one layer: q, k and v after RoPE,
/// head-major <c>[B, heads, S, D]</c> (k and v before the past is joined), and the node whose output
/// is the attention's output <c>[B, S, heads·D]</c>, which the PagedAttention node takes over.
/// </summary>
internal sealed record AttentionMatch(string Query, string Key, string Value, NodeProto Output);

/// <summary>
/// The attention of a Hugging Face Optimum export (transformers' eager attention as traced,
/// <see cref="Gemma3OptimumGraph"/>), per layer i:
/// <c>Concat(past_key_values.i.key, k, axis = ±2)</c> [→ repeat_kv <c>Unsqueeze(2) → Expand → Reshape</c>]
/// → <c>Transpose(0,1,3,2) → MatMul(q, ·) → Mul(scale) → Add(mask) [→ Cast(float)] → Softmax(−1)
/// → MatMul(·, values) → Transpose(0,2,1,3) → Reshape</c>, the values being
/// <c>Concat(past_key_values.i.value, v, axis = ±2)</c> [→ repeat_kv].
/// </summary>
/// <remarks>
/// A layer is taken for Optimum's once its keys reach a MatMul through one Transpose (ours add an
/// Unsqueeze between them); from there on any other wiring is refused with the node and the reason,
/// so a graph is never rewritten on a guess. The mask is not read: the paged op masks by position,
/// and by config.json's window on sliding layers.
/// </remarks>
internal static class OptimumAttentionMatch
{
    /// <summary>The layer's match, or null when its keys are not read the Optimum way (another matcher's turn).</summary>
    /// <exception cref="PagedRewriteException">The layer starts as Optimum's and then differs.</exception>
    public static AttentionMatch? Find(GraphProto graph, PagedAttentionRewrite.Consumers consumers, Gemma3Config config, DecoderNames names, int layer)
    {
        if (PastConcat(consumers, DecoderNames.ForLayer(names.PastKey, layer)) is not { } keyConcat)
        {
            return null;
        }

        string keys = RepeatedKv(consumers, keyConcat);
        NodeProto? keysT = consumers.Of(keys).FirstOrDefault(node => node.OpType == "Transpose");
        NodeProto? scores = keysT is null ? null
            : consumers.Of(keysT.Output[0]).FirstOrDefault(node => node.OpType == "MatMul" && node.Input[1] == keysT.Output[0]);
        if (scores is null)
        {
            return null;
        }

        Require(keysT!, Perm(keysT!).SequenceEqual([0L, 1, 3, 2]), "must swap the last two axes of the keys, perm (0, 1, 3, 2)");
        NodeProto scale = consumers.Chain(scores, ("Mul", 0));
        float expected = (float)Math.Pow(config.QueryPreAttnScalar, -0.5);
        Require(scale, FloatScalar(graph, scale.Input[1]) is { } factor && MathF.Abs(factor - expected) <= 1e-6f * expected,
            $"must scale the scores by query_pre_attn_scalar^-0.5 = {expected} from config.json, as a constant");
        NodeProto masked = consumers.Chain(scale, ("Add", 0));
        NodeProto softmax = SoftmaxAfter(consumers, masked);
        NodeProto context = consumers.Chain(softmax, ("MatMul", 0));
        NodeProto valueConcat = PastConcat(consumers, DecoderNames.ForLayer(names.PastValue, layer))
            ?? throw new PagedRewriteException(DecoderNames.ForLayer(names.PastValue, layer), "must be read by one Concat(past, new, axis = -2) like the keys");
        Require(context, context.Input[1] == RepeatedKv(consumers, valueConcat), $"must multiply the probabilities by layer {layer}'s values");
        NodeProto transpose = consumers.Chain(context, ("Transpose", 0));
        Require(transpose, Perm(transpose).SequenceEqual([0L, 2, 1, 3]), "must bring the heads back next to the head size, perm (0, 2, 1, 3)");
        NodeProto merged = consumers.Chain(transpose, ("Reshape", 0));
        return new AttentionMatch(scores.Input[0], keyConcat.Input[1], valueConcat.Input[1], merged);
    }

    /// <summary><c>Softmax(axis = −1)</c> after the mask Add, possibly through the Cast to float that <c>softmax(dtype = float32)</c> exports.</summary>
    private static NodeProto SoftmaxAfter(PagedAttentionRewrite.Consumers consumers, NodeProto masked)
    {
        NodeProto next = consumers.Single(masked.Output[0], "the masked scores");
        if (next.OpType == "Cast")
        {
            Require(next, PagedAttentionRewrite.IntAttribute(next, "to") == (long)DataType.Float, "may only cast the scores to float");
            next = consumers.Single(next.Output[0], "the masked scores");
        }

        Require(next, next.OpType == "Softmax" && PagedAttentionRewrite.IntAttribute(next, "axis") is -1 or 3,
            "must be the Softmax over the keys (axis -1) that follows the mask");
        return next;
    }

    /// <summary>The one Concat(past, new) on the head-size-major axis (2 or −2) that reads <paramref name="past"/>, or null.</summary>
    private static NodeProto? PastConcat(PagedAttentionRewrite.Consumers consumers, string past)
    {
        var concats = consumers.Of(past).Where(node => node.OpType == "Concat").ToList();
        return concats is [{ } concat] && concat.Input.Count == 2 && concat.Input[0] == past
            && PagedAttentionRewrite.IntAttribute(concat, "axis") is 2 or -2 ? concat : null;
    }

    /// <summary>
    /// The keys or values attention reads: the Concat's output, or repeat_kv's
    /// <c>Unsqueeze(axes = [2]) → Expand → Reshape</c> of it when the query heads outnumber the KV heads.
    /// </summary>
    private static string RepeatedKv(PagedAttentionRewrite.Consumers consumers, NodeProto concat)
    {
        if (consumers.Of(concat.Output[0]).FirstOrDefault(node => node.OpType == "Unsqueeze") is not { } unsqueeze)
        {
            return concat.Output[0];
        }

        return consumers.Chain(unsqueeze, ("Expand", 0), ("Reshape", 0)).Output[0];
    }

    private static IEnumerable<long> Perm(NodeProto transpose) =>
        transpose.Attribute.FirstOrDefault(a => a.Name == "perm")?.Ints ?? [];

    /// <summary>A one-element float initializer or Constant node's value; null for anything else.</summary>
    private static float? FloatScalar(GraphProto graph, string value)
    {
        TensorProto? tensor = GraphEdits.FindInitializer(graph, value)
            ?? (GraphEdits.Producer(graph, value) is { OpType: "Constant" } constant ? constant.Attribute.FirstOrDefault(a => a.Name == "value")?.T : null);
        if (tensor is null || tensor.DataType != (int)DataType.Float || tensor.Dims.Aggregate(1L, (a, b) => a * b) != 1)
        {
            return null;
        }

        return tensor.FloatData.Count == 1 ? tensor.FloatData[0]
            : tensor.RawData.Length == sizeof(float) ? MemoryMarshal.Read<float>(tensor.RawData.Span) : null;
    }

    private static void Require(NodeProto node, bool holds, string reason)
    {
        if (!holds)
        {
            throw new PagedRewriteException(node.Name, reason);
        }
    }
}
