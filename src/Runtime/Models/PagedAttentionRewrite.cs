using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models;

/// <summary>
/// Rewrites a decoder graph, in memory, so that attention reads and writes a pool of KV
/// blocks in place (the <c>PagedAttention</c> op of src/KernelsNative) instead of taking
/// <c>past_key_values.*</c> and returning <c>present.*</c>. The folder on disk stays the
/// standard export. Sequences travel packed: <c>input_ids</c> and <c>position_ids</c> are
/// <c>[1, T]</c>, the tokens of every sequence one after another (<see cref="QueryStarts"/>
/// marks where each begins), and <see cref="LogitsIndices"/> picks the rows whose logits are
/// computed (a sequence's last token), replacing <c>num_logits_to_keep</c>.
/// </summary>
/// <remarks>
/// The pattern matched, per layer i (our builder's attention, <see cref="Gemma3Attention"/>):
/// <c>past_key_values.i.key</c> and <c>.value</c> each read by one <c>Concat(past, new, axis=2)</c>;
/// the key concat feeds <c>Transpose(0,1,3,2) → Unsqueeze → MatMul(Reshape(q), ·)</c>, the value
/// concat <c>Unsqueeze → MatMul(probabilities, ·) → Reshape → Transpose → Reshape</c>, whose
/// output is the layer's attention output. q, k and v are post-RoPE, <c>[B, heads, S, D]</c>.
/// Everything between becomes one <c>PagedAttention</c> node; the mask subgraph, the present
/// outputs and the past inputs go. Any other wiring is refused with the node and the reason.
/// Optimum's traced eager attention is matched by <see cref="OptimumAttentionMatch"/>, a layer whose past
/// is read by a GroupQueryAttention is rewritten by <see cref="GroupQueryAttentionRewrite"/>; graphs
/// without <c>num_logits_to_keep</c> get their row selection from <see cref="LogitsRowSelection"/>.
/// </remarks>
public static class PagedAttentionRewrite
{
    public const string OpType = "PagedAttention";
    public const string KvPool = "kv_pool";
    public const string BlockTables = "block_tables";
    public const string PastLengths = "past_lens";
    public const string QueryStarts = "query_starts";
    public const string LogitsIndices = "logits_indices";

    /// <summary>The rewritten copy of <paramref name="model"/>; <paramref name="model"/> is left as it is.</summary>
    /// <exception cref="PagedRewriteException">The graph does not have the pattern above.</exception>
    /// <param name="modelDirectory">The folder of the model's external data, for the fusions that read weights (<see cref="DecoderFusions"/>); null skips them.</param>
    /// <param name="cpuFusedOps">Let <see cref="DecoderFusions"/> write our CPU-only fused ops (QkNormRope, GeluGate); off for a
    /// CUDA session, where ONNX Runtime's own ops keep those chains on the GPU.</param>
    /// <param name="kvCacheDtype">The element type of the <c>kv_pool</c> input (the op stores fp16 keys and values rounded, and reads them widened).</param>
    public static ModelProto Rewrite(ModelProto model, Gemma3Config config, DecoderNames? names = null, string? modelDirectory = null,
        bool cpuFusedOps = true, Generation.Kv.KvCacheDtype kvCacheDtype = Generation.Kv.KvCacheDtype.Fp32)
    {
        names ??= new DecoderNames();
        ModelProto rewritten = model.Clone();
        GraphProto graph = rewritten.Graph;
        RequireFloatCaches(graph, names);
        var consumers = new Consumers(graph);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            RewriteLayer(graph, consumers, config, names, layer);
        }

        KeepSelectedLogits(graph, consumers, names);
        ReplaceInterface(graph, config, names, kvCacheDtype);
        GraphEdits.RemoveDeadNodes(graph);
        GraphEdits.RemoveUnusedInitializers(graph);
        DecoderFusions.Apply(rewritten, modelDirectory, ourOps: cpuFusedOps);
        if (!rewritten.OpsetImport.Any(opset => opset.Domain == SparseFormat.Domain))
        {
            rewritten.OpsetImport.Add(new OperatorSetIdProto { Domain = SparseFormat.Domain, Version = 1 });
        }

        return rewritten;
    }

    private static void RewriteLayer(GraphProto graph, Consumers consumers, Gemma3Config config, DecoderNames names, int layer)
    {
        if (GroupQueryAttentionRewrite.TryRewriteLayer(graph, consumers.Of(DecoderNames.ForLayer(names.PastKey, layer)), config, names, layer))
        {
            return;
        }

        AttentionMatch match = OptimumAttentionMatch.Find(graph, consumers, config, names, layer) ?? MatchOurs(graph, consumers, names, layer);
        string prefix = $"/model/layers.{layer}/self_attn/paged/";
        var nodes = new List<NodeProto>();
        string query = TokenMajor(nodes, prefix + "q", match.Query);
        string key = TokenMajor(nodes, prefix + "k", match.Key);
        string value = TokenMajor(nodes, prefix + "v", match.Value);
        nodes.Add(AttentionNode(prefix + OpType, [query, key, value], match.Output.Output[0], layer, config.NumAttentionHeads, config.NumKeyValueHeads,
            (float)(1.0 / Math.Sqrt(config.QueryPreAttnScalar)), config.LayerKind(layer) == AttentionKind.Sliding ? config.SlidingWindow : 0));

        // The new nodes read q, k and v, all made before the layer's last reshape: in its place, the order stays topological.
        int at = graph.Node.IndexOf(match.Output);
        graph.Node.RemoveAt(at);
        for (int i = nodes.Count - 1; i >= 0; i--)
        {
            graph.Node.Insert(at, nodes[i]);
        }
    }

    private static AttentionMatch MatchOurs(GraphProto graph, Consumers consumers, DecoderNames names, int layer)
    {
        NodeProto keyConcat = PastConcat(consumers, DecoderNames.ForLayer(names.PastKey, layer));
        NodeProto valueConcat = PastConcat(consumers, DecoderNames.ForLayer(names.PastValue, layer));
        NodeProto scores = consumers.Chain(keyConcat, ("Transpose", 0), ("Unsqueeze", 0), ("MatMul", 1));
        NodeProto queryReshape = Producer(graph, scores.Input[0], "Reshape", scores);
        NodeProto context = consumers.Chain(valueConcat, ("Unsqueeze", 0), ("MatMul", 1));
        NodeProto merged = consumers.Chain(context, ("Reshape", 0), ("Transpose", 0), ("Reshape", 0));
        return new AttentionMatch(queryReshape.Input[0], keyConcat.Input[1], valueConcat.Input[1], merged);
    }

    /// <summary>
    /// The pool holds fp32 keys and values; exports whose caches are float16 (onnx-community's fp16 and q4f16
    /// files) would hand it half-precision rows. Refused by name rather than by ONNX Runtime's type error.
    /// </summary>
    private static void RequireFloatCaches(GraphProto graph, DecoderNames names)
    {
        string past = DecoderNames.ForLayer(names.PastKey, 0);
        if (graph.Input.FirstOrDefault(input => input.Name == past) is { } info && info.Type?.TensorType is { } tensor
            && tensor.ElemType != (int)DataType.Float)
        {
            throw new PagedRewriteException(past, $"its caches are {(DataType)tensor.ElemType}; the paged KV cache takes float32 caches "
                + "(serve the export's fp32, q8 or q4 file: Dtype = fp32 | q8 | q4)");
        }
    }

    /// <summary>
    /// One PagedAttention node: <paramref name="qkv"/> (query, key, value) and the shared pool, tables and
    /// lengths in; <paramref name="output"/> out. A <paramref name="scale"/> of 0 leaves the op's default 1/√D.
    /// </summary>
    public static NodeProto AttentionNode(string name, string[] qkv, string output, int layer, int heads, int kvHeads, float scale, int window)
    {
        var attention = new NodeProto { Name = name, OpType = OpType, Domain = SparseFormat.Domain };
        attention.Input.AddRange([.. qkv, KvPool, BlockTables, PastLengths, QueryStarts]);
        attention.Output.Add(output);
        attention.Attribute.Add(Attr("layer", (long)layer));
        attention.Attribute.Add(Attr("num_heads", (long)heads));
        attention.Attribute.Add(Attr("kv_num_heads", (long)kvHeads));
        if (scale != 0)
        {
            attention.Attribute.Add(Attr("scale", scale));
        }

        attention.Attribute.Add(Attr("sliding_window", (long)window));
        return attention;
    }

    /// <summary>[1, heads, T, D] → [1, T, heads · D]: the token-major rows the op takes.</summary>
    private static string TokenMajor(List<NodeProto> nodes, string name, string input)
    {
        var transpose = new NodeProto { Name = name + "/Transpose", OpType = "Transpose" };
        transpose.Input.Add(input);
        transpose.Output.Add(name + "/Transpose/output_0");
        transpose.Attribute.Add(Attr("perm", 0L, 2, 1, 3));
        NodeProto shape = Int64Constant(name + "/Shape", 0, 0, -1);
        var reshape = new NodeProto { Name = name + "/Reshape", OpType = "Reshape" };
        reshape.Input.AddRange([transpose.Output[0], shape.Output[0]]);
        reshape.Output.Add(name + "/Reshape/output_0");
        nodes.AddRange([transpose, shape, reshape]);
        return reshape.Output[0];
    }

    /// <summary>A Constant node holding a 1-D int64 tensor (shapes, split sizes), output <c>{name}/output_0</c>.</summary>
    internal static NodeProto Int64Constant(string name, params long[] values)
    {
        var constant = new NodeProto { Name = name, OpType = "Constant" };
        constant.Output.Add(name + "/output_0");
        constant.Attribute.Add(new AttributeProto { Name = "value", Type = AttributeProto.Types.AttributeType.Tensor, T = Int64Tensor(values) });
        return constant;
    }

    private static TensorProto Int64Tensor(params long[] values)
    {
        var tensor = new TensorProto { DataType = (int)DataType.Int64 };
        tensor.Dims.Add(values.Length);
        tensor.Int64Data.AddRange(values);
        return tensor;
    }

    /// <summary>The Concat(past, new) of a past input; the only other readers allowed are Shape nodes (the sliding mask's length), which die with it.</summary>
    private static NodeProto PastConcat(Consumers consumers, string past)
    {
        IReadOnlyList<NodeProto> readers = consumers.Of(past);
        if (readers.FirstOrDefault(node => node.OpType is not ("Concat" or "Shape")) is { } other)
        {
            throw new PagedRewriteException(other.Name, $"reads '{past}', which only the attention's Concat (and Shape) may read, as a {other.OpType}");
        }

        NodeProto concat = readers.Count(node => node.OpType == "Concat") == 1
            ? readers.First(node => node.OpType == "Concat")
            : throw new PagedRewriteException(past, $"must be read by one Concat(past, new, axis = 2), found {readers.Count(node => node.OpType == "Concat")}");
        if (concat.Input.Count != 2 || concat.Input[0] != past || IntAttribute(concat, "axis") != 2)
        {
            throw new PagedRewriteException(concat.Name, $"'{past}' must be read by one Concat(past, new, axis = 2)");
        }

        return concat;
    }

    private static NodeProto Producer(GraphProto graph, string value, string opType, NodeProto reader) =>
        GraphEdits.Producer(graph, value) is { } node && node.OpType == opType
            ? node
            : throw new PagedRewriteException(reader.Name, $"its input '{value}' must come from a {opType}");

    internal static long? IntAttribute(NodeProto node, string name) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } attribute ? attribute.I : null;

    /// <summary>
    /// <c>num_logits_to_keep</c> sliced the last positions of <c>[B, S, H]</c>; packed sequences
    /// need one row per sequence instead: <c>Gather(hidden, logits_indices, axis = 1)</c>. Graphs
    /// without the input get the same Gather before their LM head (<see cref="LogitsRowSelection"/>).
    /// </summary>
    private static void KeepSelectedLogits(GraphProto graph, Consumers consumers, DecoderNames names)
    {
        string count = names.NumLogitsToKeep;
        if (!graph.Input.Any(input => input.Name == count))
        {
            LogitsRowSelection.Insert(graph, names.Logits, LogitsIndices);
            return;
        }

        NodeProto slice = LogitsSlice(consumers, consumers.Single(count, "num_logits_to_keep"));
        var gather = new NodeProto { Name = slice.Name + "/paged_Gather", OpType = "Gather" };
        gather.Input.AddRange([slice.Input[0], LogitsIndices]);
        gather.Output.Add(slice.Output[0]);
        gather.Attribute.Add(Attr("axis", 1L));
        GraphEdits.ReplaceNode(graph, slice, gather);
    }

    /// <summary>
    /// The Slice whose starts are <c>−num_logits_to_keep</c>: <c>Neg → Slice</c> for a [1] input,
    /// with an <c>Unsqueeze</c> (0-d input, our folders before 2026-12) or a <c>Reshape</c> to [1]
    /// (undeclared rank, ours since) between them.
    /// </summary>
    private static NodeProto LogitsSlice(Consumers consumers, NodeProto negate)
    {
        if (negate.OpType != "Neg")
        {
            throw new PagedRewriteException(negate.Name, $"num_logits_to_keep must be read by a Neg, found a {negate.OpType}");
        }

        bool direct = consumers.Of(negate.Output[0]).Any(node => node.OpType == "Slice" && node.Input.Count > 1 && node.Input[1] == negate.Output[0]);
        if (direct)
        {
            return consumers.Chain(negate, ("Slice", 1));
        }

        string toVector = consumers.Of(negate.Output[0]).Any(node => node.OpType == "Unsqueeze") ? "Unsqueeze" : "Reshape";
        return consumers.Chain(negate, (toVector, 0), ("Slice", 1));
    }

    /// <summary>Past inputs, the mask and num_logits_to_keep out; the pool, tables, lengths and row selection in; no present outputs.</summary>
    private static void ReplaceInterface(GraphProto graph, Gemma3Config config, DecoderNames names, Generation.Kv.KvCacheDtype kvCacheDtype)
    {
        var gone = new HashSet<string> { names.AttentionMask, names.NumLogitsToKeep };
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            gone.Add(DecoderNames.ForLayer(names.PastKey, layer));
            gone.Add(DecoderNames.ForLayer(names.PastValue, layer));
            gone.Add(DecoderNames.ForLayer(names.PresentKey, layer));
            gone.Add(DecoderNames.ForLayer(names.PresentValue, layer));
        }

        foreach (ValueInfoProto info in graph.Input.Where(input => gone.Contains(input.Name)).ToList())
        {
            graph.Input.Remove(info);
        }

        foreach (ValueInfoProto info in graph.Output.Where(output => gone.Contains(output.Name)).ToList())
        {
            graph.Output.Remove(info);
        }

        if (!graph.Input.Any(input => input.Name == names.PositionIds))
        {
            // GroupQueryAttention exports that rotate inside the op (GenAI's) declare none: the rewrite's rotary reads it.
            graph.Input.Add(ValueInfo(names.PositionIds, DataType.Int64, "batch_size", "sequence_length"));
        }

        graph.Input.Add(ValueInfo(KvPool, kvCacheDtype == Generation.Kv.KvCacheDtype.Fp16 ? DataType.Float16 : DataType.Float, "num_blocks", 2, config.NumKeyValueHeads, "block_size", config.HeadDim));
        graph.Input.Add(ValueInfo(BlockTables, DataType.Int32, config.NumHiddenLayers, "num_sequences", "max_blocks"));
        graph.Input.Add(ValueInfo(PastLengths, DataType.Int32, config.NumHiddenLayers, "num_sequences"));
        graph.Input.Add(ValueInfo(QueryStarts, DataType.Int32, "num_sequences_plus_1"));
        graph.Input.Add(ValueInfo(LogitsIndices, DataType.Int64, "num_logits"));
    }

    /// <summary>Who reads each value, built once: the pattern walks forward from the past inputs.</summary>
    internal sealed class Consumers
    {
        private readonly Dictionary<string, List<NodeProto>> _readers = [];

        public Consumers(GraphProto graph)
        {
            foreach (NodeProto node in graph.Node)
            {
                foreach (string input in node.Input)
                {
                    if (!_readers.TryGetValue(input, out List<NodeProto>? list))
                    {
                        _readers[input] = list = [];
                    }

                    list.Add(node);
                }
            }
        }

        public IReadOnlyList<NodeProto> Of(string value) => _readers.TryGetValue(value, out List<NodeProto>? readers) ? readers : [];

        public NodeProto Single(string value, string what) =>
            _readers.TryGetValue(value, out List<NodeProto>? readers) && readers.Count == 1
                ? readers[0]
                : throw new PagedRewriteException(value, $"{what} must be read by exactly one node, found {readers?.Count ?? 0}");

        /// <summary>
        /// From <paramref name="start"/>'s output, the node of each op type in turn that reads the
        /// previous output as its input number <c>Slot</c>; returns the last.
        /// </summary>
        public NodeProto Chain(NodeProto start, params (string OpType, int Slot)[] steps)
        {
            NodeProto current = start;
            foreach (var (opType, slot) in steps)
            {
                string value = current.Output[0];
                List<NodeProto> readers = _readers.TryGetValue(value, out List<NodeProto>? found) ? found : [];
                current = readers.FirstOrDefault(node => node.OpType == opType && node.Input.Count > slot && node.Input[slot] == value)
                    ?? throw new PagedRewriteException(current.Name, $"its output must feed a {opType} (as input {slot}); read by: "
                        + string.Join(", ", readers.Select(node => $"{node.OpType} '{node.Name}'")));
            }

            return current;
        }
    }
}

/// <summary>A decoder graph the paged-attention rewrite cannot handle: the node (or value) at fault and why.</summary>
public sealed class PagedRewriteException(string node, string reason)
    : Exception($"cannot rewrite the attention for the paged KV cache at '{node}': {reason}")
{
    public string Node { get; } = node;
}
