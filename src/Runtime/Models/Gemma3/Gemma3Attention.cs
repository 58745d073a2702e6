using Serving.Runtime.Onnx;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// Grouped-query self-attention of one Gemma 3 layer, with its KV cache in the
/// <c>[B, Hkv, T, D]</c> layout of Hugging Face exports.
/// </summary>
internal static class Gemma3Attention
{
    /// <summary>
    /// The value name of a layer's query after q_norm and before RoPE, <c>[B, S, Nh, D]</c>:
    /// the tap that KV calibration exposes as an extra output.
    /// </summary>
    public static string QueryPreRopeName(int layer) => NormOutputName(layer, "q");

    private static string NormOutputName(int layer, string which) => $"/model/layers.{layer}/self_attn/{which}_norm/output_0";

    public static string Build(GraphBuilder g, Gemma3Config config, int layer, string x, string mask, string cos, string sin)
    {
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads, d = config.HeadDim;
        string query = Project(g, config, layer, x, "q", heads, cos, sin);
        string key = Project(g, config, layer, x, "k", kvHeads, cos, sin);
        string value = g.Op("Transpose", [
            g.Op("Reshape", [Gemma3Graph.Linear(g, "v_proj", x, Gemma3Weights.Layer(layer, "self_attn.v_proj.weight")), g.Int64s(0, 0, kvHeads, d)])],
            Attr("perm", 0L, 2, 1, 3));

        string keys = Present(g, config, layer, "key", key);
        string values = Present(g, config, layer, "value", value);

        // Scores per KV head for its group of query heads: [B, Hkv, G, S, T], no repeated K/V.
        string groupedQuery = g.Op("Reshape", [query, g.Int64s(0, kvHeads, config.NumQueryGroups, -1, d)]);
        string keysT = g.Op("Unsqueeze", [g.Op("Transpose", [keys], Attr("perm", 0L, 1, 3, 2)), g.Int64s(2)]);
        string scores = g.Op("Mul", [g.Op("MatMul", [groupedQuery, keysT]), g.FloatScalar((float)(1.0 / Math.Sqrt(config.QueryPreAttnScalar)))]);
        string masked = g.Op("Where", [mask, scores, g.FloatScalar(float.MinValue)]);
        string probabilities = g.Op("Softmax", [masked], Attr("axis", -1L));
        string context = g.Op("MatMul", [probabilities, g.Op("Unsqueeze", [values, g.Int64s(2)])]);
        string merged = g.Op("Reshape", [
            g.Op("Transpose", [g.Op("Reshape", [context, g.Int64s(0, heads, -1, d)])], Attr("perm", 0L, 2, 1, 3)),
            g.Int64s(0, 0, heads * d)]);
        return Gemma3Graph.Linear(g, "o_proj", merged, Gemma3Weights.Layer(layer, "self_attn.o_proj.weight"));
    }

    /// <summary>q or k: projection, per-head RMSNorm (QK-norm), then RoPE; returns [B, heads, S, D].</summary>
    private static string Project(GraphBuilder g, Gemma3Config config, int layer, string x, string which, int heads, string cos, string sin)
    {
        string projected = Gemma3Graph.Linear(g, $"{which}_proj", x, Gemma3Weights.Layer(layer, $"self_attn.{which}_proj.weight"));
        string split = g.Op("Reshape", [projected, g.Int64s(0, 0, heads, config.HeadDim)]);
        string normed;
        using (g.PushScope($"{which}_norm"))
        {
            normed = Gemma3Graph.RmsNorm(g, split, Gemma3Weights.Layer(layer, $"self_attn.{which}_norm.weight"), config.RmsNormEps);
            normed = g.Rename(normed, NormOutputName(layer, which));
        }

        string transposed = g.Op("Transpose", [normed], Attr("perm", 0L, 2, 1, 3));
        using var scope = g.PushScope($"{which}_rope");
        return ApplyRope(g, transposed, config.HeadDim, cos, sin);
    }

    /// <summary>x·cos + rotate_half(x)·sin, rotate_half(x) = [−x₂, x₁].</summary>
    private static string ApplyRope(GraphBuilder g, string x, int headDim, string cos, string sin)
    {
        string[] halves = g.OpN("Split", [x, g.Int64s(headDim / 2, headDim / 2)], 2, Attr("axis", -1L));
        string rotated = g.Op("Concat", [g.Op("Neg", [halves[1]]), halves[0]], Attr("axis", -1L));
        return g.Op("Add", [g.Op("Mul", [x, cos]), g.Op("Mul", [rotated, sin])]);
    }

    /// <summary>
    /// Past + new keys (or values). The full concatenation feeds attention; a sliding layer
    /// returns only its last window − 1 slots as present, all a later query can see.
    /// </summary>
    private static string Present(GraphBuilder g, Gemma3Config config, int layer, string kind, string current)
    {
        string all = g.Op("Concat", [kind == "key" ? DecoderNames.PastKeyOf(layer) : DecoderNames.PastValueOf(layer), current], Attr("axis", 2L));
        bool sliding = config.LayerKind(layer) == AttentionKind.Sliding;
        string present = sliding
            ? g.Op("Slice", [all, g.Int64s(-(config.SlidingWindow - 1)), g.Int64s(long.MaxValue), g.Int64s(2)])
            : g.Op("Identity", [all]);
        string dim = sliding ? "sliding_present_sequence_length" : "total_sequence_length";
        g.Output(present, kind == "key" ? DecoderNames.PresentKeyOf(layer) : DecoderNames.PresentValueOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, dim, config.HeadDim);
        return all;
    }
}
