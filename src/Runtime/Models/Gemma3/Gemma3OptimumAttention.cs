using Serving.Runtime.Onnx;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// One layer's self-attention as PyTorch traces transformers' <c>Gemma3Attention.forward</c> with
/// <c>eager_attention_forward</c>: every past token kept, K/V heads repeated for the query heads.
/// </summary>
internal static class Gemma3OptimumAttention
{
    public static string Build(GraphBuilder g, Gemma3Config config, int layer, string x, string mask, string cos, string sin)
    {
        int heads = config.NumAttentionHeads, kvHeads = config.NumKeyValueHeads;
        string query = HeadMajor(g, config, layer, x, "q", heads);
        string key = HeadMajor(g, config, layer, x, "k", kvHeads);
        string value = HeadMajor(g, config, layer, x, "v", kvHeads);
        query = Norm(g, config, layer, query, "q");
        key = Norm(g, config, layer, key, "k");
        query = ApplyRope(g, query, config.HeadDim, cos, sin);
        key = ApplyRope(g, key, config.HeadDim, cos, sin);

        string keys = RepeatKv(g, config, Present(g, config, layer, "key", key));
        string values = RepeatKv(g, config, Present(g, config, layer, "value", value));
        string scores = g.Op("Mul", [
            g.Op("MatMul", [query, g.Op("Transpose", [keys], Attr("perm", 0L, 1, 3, 2))]),
            g.FloatScalar((float)Math.Pow(config.QueryPreAttnScalar, -0.5))]);
        string masked = g.Op("Add", [scores, mask]);

        // softmax(·, dim = −1, dtype = torch.float32) exports a Cast to float before the Softmax.
        string probabilities = g.Op("Softmax", [g.Op("Cast", [masked], Attr("to", (long)DataType.Float))], Attr("axis", -1L));
        string context = g.Op("Transpose", [g.Op("MatMul", [probabilities, values])], Attr("perm", 0L, 2, 1, 3));
        string merged = g.Op("Reshape", [context, g.Int64s(0, 0, -1)]);
        return Gemma3Graph.Linear(g, "o_proj", merged, Gemma3Weights.Layer(layer, "self_attn.o_proj.weight"));
    }

    /// <summary><c>proj(x).view(B, S, −1, D).transpose(1, 2)</c>: <c>[B, heads, S, D]</c>.</summary>
    private static string HeadMajor(GraphBuilder g, Gemma3Config config, int layer, string x, string which, int heads)
    {
        string projected = Gemma3Graph.Linear(g, $"{which}_proj", x, Gemma3Weights.Layer(layer, $"self_attn.{which}_proj.weight"));
        return g.Op("Transpose", [g.Op("Reshape", [projected, g.Int64s(0, 0, heads, config.HeadDim)])], Attr("perm", 0L, 2, 1, 3));
    }

    /// <summary>q_norm / k_norm, which transformers applies after the transpose (over D either way).</summary>
    private static string Norm(GraphBuilder g, Gemma3Config config, int layer, string x, string which)
    {
        using var scope = g.PushScope($"{which}_norm");
        return Gemma3Graph.RmsNorm(g, x, Gemma3Weights.Layer(layer, $"self_attn.{which}_norm.weight"), config.RmsNormEps);
    }

    /// <summary>
    /// <c>x·cos + rotate_half(x)·sin</c> with rotate_half's two slices <c>x[..., :D/2]</c> and
    /// <c>x[..., D/2:]</c> as the tracer records them (Slice, not Split).
    /// </summary>
    private static string ApplyRope(GraphBuilder g, string x, int headDim, string cos, string sin)
    {
        string first = g.Op("Slice", [x, g.Int64s(0), g.Int64s(headDim / 2), g.Int64s(-1), g.Int64s(1)]);
        string second = g.Op("Slice", [x, g.Int64s(headDim / 2), g.Int64s(long.MaxValue), g.Int64s(-1), g.Int64s(1)]);
        string rotated = g.Op("Concat", [g.Op("Neg", [second]), first], Attr("axis", -1L));
        return g.Op("Add", [g.Op("Mul", [x, cos]), g.Op("Mul", [rotated, sin])]);
    }

    /// <summary>
    /// <c>torch.cat([past, new], dim = −2)</c> (DynamicCache.update): the result is the present
    /// output and what attention reads; no layer trims its cache.
    /// </summary>
    private static string Present(GraphBuilder g, Gemma3Config config, int layer, string kind, string current)
    {
        string past = kind == "key" ? DecoderNames.PastKeyOf(layer) : DecoderNames.PastValueOf(layer);
        string present = kind == "key" ? DecoderNames.PresentKeyOf(layer) : DecoderNames.PresentValueOf(layer);
        string all = g.Op("Concat", [past, current], Attr("axis", -2L));
        g.Output(all, present, DataType.Float, "batch_size", config.NumKeyValueHeads, Gemma3OptimumGraph.TotalLength, config.HeadDim);
        return present;
    }

    /// <summary>
    /// repeat_kv: <c>x[:, :, None].expand(B, Hkv, G, T, D).reshape(B, Hkv·G, T, D)</c>; transformers
    /// returns x itself when G = 1, so nothing is traced then.
    /// </summary>
    private static string RepeatKv(GraphBuilder g, Gemma3Config config, string x)
    {
        int groups = config.NumQueryGroups;
        if (groups == 1)
        {
            return x;
        }

        string expanded = g.Op("Expand", [g.Op("Unsqueeze", [x, g.Int64s(2)]), g.Int64s(1, 1, groups, 1, 1)]);
        return g.Op("Reshape", [expanded, g.Int64s(0, config.NumAttentionHeads, -1, config.HeadDim)]);
    }
}
