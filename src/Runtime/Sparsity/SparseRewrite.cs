using System.Text.RegularExpressions;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Sparsity;

/// <summary>A MatMul whose constant right operand is a linear layer's weight <c>[K, N]</c>.</summary>
public sealed record SparseTarget(NodeProto Node, TensorProto Weight, int K, int N)
{
    /// <summary>The activation the MatMul multiplies (what Wanda measures).</summary>
    public string Input => Node.Input[0];
}

/// <summary>Finds the linear layers to prune and rewrites their MatMuls to <c>SparseMatMul24</c>.</summary>
public static partial class SparseRewrite
{
    public static string ValuesName(TensorProto weight) => weight.Name + ".sparse24_values";

    public static string MasksName(TensorProto weight) => weight.Name + ".sparse24_masks";

    /// <summary>
    /// Attention q/k/v/o and MLP gate/up/down projections (by node or weight name, as in our
    /// graphs and Optimum exports) that are plain fp32 MatMuls on a 2-D initializer. Embeddings
    /// and the LM head never match. <paramref name="exclude"/> drops matches by either name.
    /// </summary>
    public static IReadOnlyList<SparseTarget> FindTargets(GraphProto graph, Regex? exclude = null)
    {
        var initializers = new Dictionary<string, TensorProto>();
        foreach (TensorProto tensor in graph.Initializer)
        {
            initializers.TryAdd(tensor.Name, tensor);
        }

        var targets = new List<SparseTarget>();
        foreach (NodeProto node in graph.Node)
        {
            if (node.OpType != "MatMul" || node.Domain.Length != 0 || node.Input.Count != 2
                || !initializers.TryGetValue(node.Input[1], out TensorProto? weight)
                || weight.Dims.Count != 2 || !SparseFormat.IsSupported(weight))
            {
                continue;
            }

            bool linear = LinearLayer().IsMatch(node.Name) || LinearLayer().IsMatch(weight.Name);
            bool excluded = exclude is not null && (exclude.IsMatch(node.Name) || exclude.IsMatch(weight.Name));
            if (linear && !excluded)
            {
                targets.Add(new SparseTarget(node, weight, checked((int)weight.Dims[0]), checked((int)weight.Dims[1])));
            }
        }

        return targets;
    }

    /// <summary>
    /// Replaces each target's MatMul by <c>SparseMatMul24(A, values, masks)</c> with the same
    /// name and output, and imports the op's domain. The compressed initializers (see
    /// <see cref="ValuesName"/>, <see cref="MasksName"/>) must be added by the caller.
    /// </summary>
    public static void Rewrite(ModelProto model, IEnumerable<SparseTarget> targets)
    {
        foreach (SparseTarget target in targets)
        {
            var node = new NodeProto { Name = target.Node.Name, OpType = SparseFormat.OpType, Domain = SparseFormat.Domain };
            node.Input.AddRange([target.Input, ValuesName(target.Weight), MasksName(target.Weight)]);
            node.Output.AddRange(target.Node.Output);
            node.Attribute.Add(GraphBuilder.Attr("K", (long)target.K));
            GraphEdits.ReplaceNode(model.Graph, target.Node, node);
        }

        if (!model.OpsetImport.Any(opset => opset.Domain == SparseFormat.Domain))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = SparseFormat.Domain, Version = 1 });
        }
    }

    [GeneratedRegex(@"(attn|mlp)[./_](q|k|v|qkv|o|gate|up|down)_proj", RegexOptions.CultureInvariant)]
    private static partial Regex LinearLayer();
}
