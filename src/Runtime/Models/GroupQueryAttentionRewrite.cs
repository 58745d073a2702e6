using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;

namespace Serving.Runtime.Models;

/// <summary>
/// The paged rewrite of a layer whose attention is one <c>com.microsoft.GroupQueryAttention</c>
/// (onnx-community and ONNX Runtime GenAI exports; <see cref="Gemma3GqaGraph"/> writes both):
/// <c>GroupQueryAttention(q, k, v, past_key, past_value, seqlens_k, total_sequence_length, cos, sin)</c>
/// becomes <c>RotaryEmbedding(q)</c> and <c>RotaryEmbedding(k)</c> at the engine's <c>position_ids</c>
/// with the node's own cos/sin tables, then <see cref="PagedAttentionRewrite.OpType"/>.
/// </summary>
/// <remarks>
/// With <c>do_rotary = 1</c> the exported node rotates at positions it derives from the cache length
/// (a new token's position = its slot), which would shift every later position once TriAttention
/// evicts keys: the rewrite feeds true positions instead, so compression stays correct on these
/// graphs. <c>local_window_size</c> W attends the last W keys, the token itself included (ONNX Runtime
/// 1.32's CPU kernel; Gemma3GqaGraphTests checks it against Hugging Face's sliding_window), which is
/// the paged op's <c>sliding_window</c>. Anything the paged op cannot honour is refused with the node
/// and the field: softcap, attention bias, sinks, quantized caches, fused q/k norm weights, head counts
/// or windows that disagree with config.json.
/// </remarks>
internal static class GroupQueryAttentionRewrite
{
    private const int Query = 0, Key = 1, Value = 2, PastKey = 3, PastValue = 4, Cos = 7, Sin = 8, PositionIds = 9;

    /// <summary>Rewrites layer <paramref name="layer"/> if a GroupQueryAttention reads its past key; false if none does.</summary>
    public static bool TryRewriteLayer(GraphProto graph, IReadOnlyList<NodeProto> pastKeyReaders, Gemma3Config config, DecoderNames names, int layer)
    {
        string pastKey = DecoderNames.ForLayer(names.PastKey, layer), pastValue = DecoderNames.ForLayer(names.PastValue, layer);
        NodeProto? gqa = pastKeyReaders.FirstOrDefault(node => node.OpType == Gemma3GqaGraph.AttentionOp && node.Domain == DecoderFusions.MicrosoftDomain);
        if (gqa is null)
        {
            return false;
        }

        if (pastKeyReaders.Count != 1)
        {
            throw new PagedRewriteException(pastKey, $"is read by {pastKeyReaders.Count} nodes; only its GroupQueryAttention '{gqa.Name}' may read it");
        }

        Check(gqa, Input(gqa, PastKey) == pastKey && Input(gqa, PastValue) == pastValue,
            $"its past inputs must be '{pastKey}' and '{pastValue}', found '{Input(gqa, PastKey)}' and '{Input(gqa, PastValue)}'");
        CheckAttributes(gqa, config, layer);
        CheckOptionalInputs(gqa, names);

        string prefix = $"/model/layers.{layer}/self_attn/paged/";
        var nodes = new List<NodeProto>();
        var (query, key, value) = QueryKeyValue(gqa, config, prefix, nodes);
        if (PagedAttentionRewrite.IntAttribute(gqa, "do_rotary") is 1)
        {
            Check(gqa, Input(gqa, Cos).Length > 0 && Input(gqa, Sin).Length > 0, "do_rotary = 1 needs its cos_cache and sin_cache inputs");
            long interleaved = PagedAttentionRewrite.IntAttribute(gqa, "rotary_interleaved") ?? 0;
            query = Rotary(nodes, prefix + "q_rotary", query, names.PositionIds, Input(gqa, Cos), Input(gqa, Sin), interleaved);
            key = Rotary(nodes, prefix + "k_rotary", key, names.PositionIds, Input(gqa, Cos), Input(gqa, Sin), interleaved);
        }

        float scale = gqa.Attribute.FirstOrDefault(a => a.Name == "scale")?.F ?? 0f;
        long window = PagedAttentionRewrite.IntAttribute(gqa, "local_window_size") ?? -1;
        nodes.Add(PagedAttentionRewrite.AttentionNode(prefix + PagedAttentionRewrite.OpType, [query, key, value], gqa.Output[0], layer,
            config.NumAttentionHeads, config.NumKeyValueHeads, scale, window > 0 ? checked((int)window) : 0));

        int at = graph.Node.IndexOf(gqa);
        graph.Node.RemoveAt(at);
        for (int i = nodes.Count - 1; i >= 0; i--)
        {
            graph.Node.Insert(at, nodes[i]);
        }

        return true;
    }

    private static string Input(NodeProto node, int index) => node.Input.Count > index ? node.Input[index] : "";

    private static void Check(NodeProto node, bool condition, string reason)
    {
        if (!condition)
        {
            throw new PagedRewriteException(node.Name, reason);
        }
    }

    private static void CheckAttributes(NodeProto gqa, Gemma3Config config, int layer)
    {
        long? heads = PagedAttentionRewrite.IntAttribute(gqa, "num_heads"), kvHeads = PagedAttentionRewrite.IntAttribute(gqa, "kv_num_heads");
        Check(gqa, heads == config.NumAttentionHeads, $"num_heads = {heads} but config.json says num_attention_heads = {config.NumAttentionHeads}");
        Check(gqa, kvHeads == config.NumKeyValueHeads, $"kv_num_heads = {kvHeads} but config.json says num_key_value_heads = {config.NumKeyValueHeads}");
        float softcap = gqa.Attribute.FirstOrDefault(a => a.Name == "softcap")?.F ?? 0f;
        Check(gqa, softcap == 0f, $"softcap = {softcap}: the paged attention op has no logit soft-capping");
        foreach (string unsupported in new[] { "smooth_softmax", "qk_output", "k_quant_type", "v_quant_type", "kv_cache_bit_width", "sliding_window_cache" })
        {
            long? setting = PagedAttentionRewrite.IntAttribute(gqa, unsupported);
            Check(gqa, setting is null or 0, $"{unsupported} = {setting} is not supported by the paged KV cache");
        }

        long window = PagedAttentionRewrite.IntAttribute(gqa, "local_window_size") ?? -1;
        bool sliding = config.LayerKind(layer) == AttentionKind.Sliding;
        Check(gqa, sliding ? window == config.SlidingWindow : window <= 0,
            $"local_window_size = {window} but config.json makes layer {layer} " + (sliding ? $"a sliding layer of window {config.SlidingWindow}" : "a global layer (expected -1)"));
    }

    /// <summary>Inputs past sin_cache: position_ids may be the graph's own (the rotary reads it anyway); the rest change the arithmetic.</summary>
    private static void CheckOptionalInputs(NodeProto gqa, DecoderNames names)
    {
        string[] meaning = ["position_ids", "attention_bias", "head_sink", "k_scale", "v_scale", "q_norm_weight", "k_norm_weight"];
        for (int index = PositionIds; index < gqa.Input.Count; index++)
        {
            string input = gqa.Input[index];
            string what = index - PositionIds < meaning.Length ? meaning[index - PositionIds] : $"input {index}";
            Check(gqa, input.Length == 0 || (index == PositionIds && input == names.PositionIds),
                $"its {what} input '{input}' is not supported by the paged rewrite");
        }
    }

    /// <summary>q, k and v rows <c>[1, T, heads·D]</c>; a packed input (k and v empty) is split first.</summary>
    private static (string Query, string Key, string Value) QueryKeyValue(NodeProto gqa, Gemma3Config config, string prefix, List<NodeProto> nodes)
    {
        if (Input(gqa, Key).Length > 0 && Input(gqa, Value).Length > 0)
        {
            return (gqa.Input[Query], gqa.Input[Key], gqa.Input[Value]);
        }

        Check(gqa, Input(gqa, Key).Length == 0 && Input(gqa, Value).Length == 0, "key and value must both be given or both be packed into query");
        long q = (long)config.NumAttentionHeads * config.HeadDim, kv = (long)config.NumKeyValueHeads * config.HeadDim;
        NodeProto sizes = PagedAttentionRewrite.Int64Constant(prefix + "qkv/sizes", q, kv, kv);
        var split = new NodeProto { Name = prefix + "qkv/Split", OpType = "Split" };
        split.Input.AddRange([gqa.Input[Query], sizes.Output[0]]);
        split.Output.AddRange([prefix + "qkv/Split/output_0", prefix + "qkv/Split/output_1", prefix + "qkv/Split/output_2"]);
        split.Attribute.Add(Attr("axis", -1L));
        nodes.AddRange([sizes, split]);
        return (split.Output[0], split.Output[1], split.Output[2]);
    }

    private static string Rotary(List<NodeProto> nodes, string name, string rows, string positionIds, string cos, string sin, long interleaved)
    {
        var rotary = new NodeProto { Name = name + "/RotaryEmbedding", OpType = "RotaryEmbedding", Domain = DecoderFusions.MicrosoftDomain };
        rotary.Input.AddRange([rows, positionIds, cos, sin]);
        rotary.Output.Add(name + "/RotaryEmbedding/output_0");
        rotary.Attribute.Add(Attr("interleaved", interleaved));
        nodes.Add(rotary);
        return rotary.Output[0];
    }
}
