using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Quantization;

/// <summary>
/// The embedding lookup <c>Gather(E, ids)</c> on a <c>[V, H]</c> initializer and, when the LM head
/// is tied, the <c>Gemm(h, E, transB = 1)</c> that reads the same weight, or the traced
/// <c>MatMul(h, Transpose(E))</c> of Optimum-style graphs (<see cref="HeadTranspose"/> is then that Transpose).
/// </summary>
public sealed record EmbeddingTarget(TensorProto Weight, NodeProto Gather, NodeProto? Head, int Vocab, int Hidden)
{
    public NodeProto? HeadTranspose { get; init; }
}

/// <summary>
/// Graph edits of <c>serving quantize</c>: MatMul → <c>MatMulNBits</c>, the embedding Gather →
/// <c>GatherBlockQuantized</c> and the tied head Gemm → <c>MatMulNBits</c> over the same packed
/// tensor (ONNX Runtime ContribOperators, domain <c>com.microsoft</c>), fp16 weights behind Casts.
/// </summary>
public static class QuantizeRewrite
{
    public const string Domain = "com.microsoft";

    public static string DataName(TensorProto weight, BlockSpec spec) => $"{weight.Name}_Q{spec.Bits}";

    public static string ScalesName(TensorProto weight) => weight.Name + "_scales";

    public static string ZeroPointsName(TensorProto weight) => weight.Name + "_zero_points";

    /// <summary>4-bit asymmetric embeddings only: GatherBlockQuantized reads one zero point per byte here (see <see cref="RewriteEmbedding"/>).</summary>
    public static string GatherZeroPointsName(TensorProto weight) => weight.Name + "_zero_points_gather";

    public static string Fp16Name(string weight) => weight + "_fp16";

    /// <summary>True when a graph already runs quantized weights (quantizing again would quantize the dequantized error).</summary>
    public static bool IsQuantized(GraphProto graph) =>
        graph.Node.Any(node => node.Domain == Domain && node.OpType is "MatMulNBits" or "GatherBlockQuantized");

    /// <summary>The first Gather on axis 0 of a 2-D fp32 initializer, and its tied head if a Gemm reads it with transB = 1.</summary>
    public static EmbeddingTarget? FindEmbedding(GraphProto graph)
    {
        var floats = graph.Initializer
            .Where(t => t.Dims.Count == 2 && t.DataType == (int)DataType.Float)
            .GroupBy(t => t.Name).ToDictionary(g => g.Key, g => g.First());
        NodeProto? gather = graph.Node.FirstOrDefault(node => node.OpType == "Gather" && node.Domain.Length == 0
            && floats.ContainsKey(node.Input[0]) && IntAttribute(node, "axis", 0) == 0);
        if (gather is null)
        {
            return null;
        }

        TensorProto weight = floats[gather.Input[0]];
        NodeProto? head = graph.Node.FirstOrDefault(node => node.OpType == "Gemm" && node.Domain.Length == 0
            && node.Input.Count == 2 && node.Input[1] == weight.Name && node.Input[0] != weight.Name
            && IntAttribute(node, "transB", 0) == 1 && IntAttribute(node, "transA", 0) == 0 && FloatAttribute(node, "alpha", 1f) == 1f);
        var (tracedHead, transpose) = head is null ? TransposedHead(graph, weight.Name) : (null, null);
        return new EmbeddingTarget(weight, gather, head ?? tracedHead, checked((int)weight.Dims[0]), checked((int)weight.Dims[1])) { HeadTranspose = transpose };
    }

    /// <summary>
    /// <c>MatMul(h, Transpose(E, perm = [1, 0]))</c> with the Transpose read by that MatMul alone: the tied head
    /// as PyTorch traces it, which MatMulNBits computes from E's <c>[V, H]</c> rows as the Gemm form does.
    /// </summary>
    private static (NodeProto? Head, NodeProto? Transpose) TransposedHead(GraphProto graph, string weight)
    {
        NodeProto? transpose = graph.Node.FirstOrDefault(node => node.OpType == "Transpose" && node.Domain.Length == 0 && node.Input[0] == weight
            && node.Attribute.FirstOrDefault(a => a.Name == "perm") is { } perm && perm.Ints.SequenceEqual([1L, 0]));
        if (transpose is null)
        {
            return (null, null);
        }

        var readers = graph.Node.Where(node => node.Input.Contains(transpose.Output[0])).ToList();
        return readers is [{ OpType: "MatMul", Domain.Length: 0 } head] && head.Input.Count == 2 && head.Input[1] == transpose.Output[0]
            && !graph.Output.Any(output => output.Name == transpose.Output[0])
            ? (head, transpose) : (null, null);
    }

    /// <summary>Initializers of a quantized <c>[N, K]</c> matrix, named after <paramref name="weight"/>.</summary>
    public static IEnumerable<TensorProto> Tensors(TensorProto weight, QuantizedMatrix matrix)
    {
        yield return Tensor(DataName(weight, matrix.Spec), DataType.Uint8, [matrix.N, matrix.KBlocks, matrix.Spec.BlobSize], matrix.Data);
        yield return Tensor(ScalesName(weight), DataType.Float, [matrix.N, matrix.KBlocks],
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(matrix.Scales.AsSpan()).ToArray());
        if (matrix.ZeroPoints is { } zeroPoints)
        {
            yield return Tensor(ZeroPointsName(weight), DataType.Uint8, [matrix.N, matrix.Spec.ZeroPointBytes(matrix.K)], zeroPoints);
        }
    }

    /// <summary>GatherBlockQuantized's 4-bit zero points <c>[V, k_blocks, 1]</c>: one per byte, in the low nibble.</summary>
    public static TensorProto GatherZeroPoints(TensorProto weight, QuantizedMatrix matrix)
    {
        var bytes = new byte[(long)matrix.N * matrix.KBlocks];
        for (int n = 0; n < matrix.N; n++)
        {
            for (int block = 0; block < matrix.KBlocks; block++)
            {
                bytes[((long)n * matrix.KBlocks) + block] = (byte)matrix.ZeroPoint(n, block);
            }
        }

        return Tensor(GatherZeroPointsName(weight), DataType.Uint8, [matrix.N, matrix.KBlocks, 1], bytes);
    }

    /// <summary>MatMul(A, W[K, N]) → MatMulNBits(A, W_Q, W_scales[, W_zero_points]) with the same name and output.</summary>
    public static void RewriteLinear(GraphProto graph, SparseTarget target, BlockSpec spec, int accuracyLevel) =>
        GraphEdits.ReplaceNode(graph, target.Node,
            MatMulNBits(target.Node.Name, target.Input, target.Weight, target.Node.Output[0], target.K, target.N, spec, accuracyLevel));

    /// <summary>
    /// The embedding and its tied head read one packed tensor. MatMulNBits wants B as
    /// <c>[V, k_blocks, blob]</c> and scales of rank ≤ 2; GatherBlockQuantized on uint8 wants the
    /// quantized axis last and scales of the data's rank. So the gather reads the same 3-D tensor
    /// with the block's bytes as its quantized axis and scales unsqueezed to <c>[V, k_blocks, 1]</c>
    /// (one block per scale, the same arithmetic), and its output <c>[…, k_blocks, block]</c> is
    /// reshaped to <c>[…, H]</c>. ONNX Runtime folds the Unsqueeze of the scales at load (a copy of
    /// the scales, 1/8 of the 4-bit data at block 32); the data itself exists once.
    /// </summary>
    public static void RewriteEmbedding(GraphProto graph, EmbeddingTarget target, BlockSpec spec, int accuracyLevel, int defaultOpset)
    {
        TensorProto weight = target.Weight;
        string scope = target.Gather.Name.Length > 0 ? target.Gather.Name : "/model/embed_tokens/Gather";
        int blocks = spec.Blocks(target.Hidden), padded = blocks * spec.BlockSize;
        var nodes = new List<NodeProto>();
        string scales3 = Unsqueeze(graph, nodes, scope + "/scales", ScalesName(weight), defaultOpset);
        List<string> inputs = [DataName(weight, spec), target.Gather.Input[1], scales3];
        if (!spec.Symmetric)
        {
            inputs.Add(spec.Bits == 8 ? Unsqueeze(graph, nodes, scope + "/zero_points", ZeroPointsName(weight), defaultOpset) : GatherZeroPointsName(weight));
        }

        string gathered = Node(nodes, scope + "/GatherBlockQuantized", "GatherBlockQuantized", Domain, inputs,
            Attr("gather_axis", 0L), Attr("quantize_axis", 2L), Attr("block_size", (long)spec.BlockSize), Attr("bits", (long)spec.Bits));
        string indicesShape = Node(nodes, scope + "/Shape", "Shape", "", [target.Gather.Input[1]]);
        string shape = Node(nodes, scope + "/Concat", "Concat", "", [indicesShape, Constant(graph, scope + "/row_width", [padded])], Attr("axis", 0L));
        string output = target.Gather.Output[0];
        string rows = Node(nodes, scope + "/Reshape", "Reshape", "", [gathered, shape], output: padded == target.Hidden ? output : null);
        if (padded != target.Hidden)
        {
            Node(nodes, scope + "/Slice", "Slice", "",
                [rows, Constant(graph, scope + "/start", [0]), Constant(graph, scope + "/end", [target.Hidden]), Constant(graph, scope + "/axis", [-1])], output: output);
        }

        ReplaceNode(graph, target.Gather, nodes);
        if (target.Head is { } head)
        {
            GraphEdits.ReplaceNode(graph, head,
                MatMulNBits(head.Name, head.Input[0], weight, head.Output[0], target.Hidden, target.Vocab, spec, accuracyLevel));
            if (target.HeadTranspose is { } transpose)
            {
                graph.Node.Remove(transpose);
            }
        }
    }

    /// <summary>
    /// Makes <paramref name="weight"/> the output of <c>Cast(weight_fp16, to = float)</c> at the top
    /// of the graph: the file stores half the bytes and every consumer still sees fp32.
    /// </summary>
    public static void CastFromFp16(GraphProto graph, string weight)
    {
        var cast = new NodeProto { Name = weight + "/Cast", OpType = "Cast" };
        cast.Input.Add(Fp16Name(weight));
        cast.Output.Add(weight);
        cast.Attribute.Add(Attr("to", (long)DataType.Float));
        graph.Node.Insert(0, cast);
    }

    public static void ImportDomain(ModelProto model)
    {
        if (!model.OpsetImport.Any(opset => opset.Domain == Domain))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = Domain, Version = 1 });
        }
    }

    private static NodeProto MatMulNBits(string name, string input, TensorProto weight, string output, int k, int n, BlockSpec spec, int accuracyLevel)
    {
        var node = new NodeProto { Name = name, OpType = "MatMulNBits", Domain = Domain };
        node.Input.AddRange([input, DataName(weight, spec), ScalesName(weight)]);
        if (!spec.Symmetric)
        {
            node.Input.Add(ZeroPointsName(weight));
        }

        node.Output.Add(output);
        node.Attribute.AddRange([Attr("K", (long)k), Attr("N", (long)n), Attr("bits", (long)spec.Bits),
            Attr("block_size", (long)spec.BlockSize), Attr("accuracy_level", (long)accuracyLevel)]);
        return node;
    }

    private static string Unsqueeze(GraphProto graph, List<NodeProto> nodes, string scope, string input, int defaultOpset) =>
        defaultOpset >= 13
            ? Node(nodes, scope + "/Unsqueeze", "Unsqueeze", "", [input, Constant(graph, scope + "/axes", [2])])
            : Node(nodes, scope + "/Unsqueeze", "Unsqueeze", "", [input], Attr("axes", 2L));

    private static string Node(List<NodeProto> nodes, string name, string opType, string domain, IEnumerable<string> inputs,
        params AttributeProto[] attributes) => Node(nodes, name, opType, domain, inputs, null, attributes);

    private static string Node(List<NodeProto> nodes, string name, string opType, string domain, IEnumerable<string> inputs,
        string? output, params AttributeProto[] attributes)
    {
        var node = new NodeProto { Name = name, OpType = opType, Domain = domain };
        node.Input.AddRange(inputs);
        node.Output.Add(output ?? name + "_output_0");
        node.Attribute.AddRange(attributes);
        nodes.Add(node);
        return node.Output[0];
    }

    private static string Constant(GraphProto graph, string name, long[] values)
    {
        var tensor = Tensor(name, DataType.Int64, [values.Length], System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray());
        graph.Initializer.Add(tensor);
        return name;
    }

    private static TensorProto Tensor(string name, DataType type, long[] dims, byte[] bytes)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(bytes) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    private static void ReplaceNode(GraphProto graph, NodeProto old, List<NodeProto> replacements)
    {
        int index = graph.Node.IndexOf(old);
        graph.Node.RemoveAt(index);
        for (int i = 0; i < replacements.Count; i++)
        {
            graph.Node.Insert(index + i, replacements[i]);
        }
    }

    private static long IntAttribute(NodeProto node, string name, long fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } attribute ? attribute.I : fallback;

    private static float FloatAttribute(NodeProto node, string name, float fallback) =>
        node.Attribute.FirstOrDefault(a => a.Name == name) is { } attribute ? attribute.F : fallback;
}
