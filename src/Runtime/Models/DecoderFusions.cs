using System.Runtime.InteropServices;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models;

/// <summary>
/// Replaces the element-wise chains of a decoder graph by ONNX Runtime's fused CPU kernels, at
/// load, in memory: a decode step of the 270M model ran ~1,100 tiny nodes, and their dispatch
/// cost more than the 4-bit matrix products. Each pattern is matched on operators, not names, so it fits
/// any export that writes the same arithmetic; a chain that does not match exactly is left as
/// it is (the fusion is an optimisation, never a requirement).
/// </summary>
/// <remarks>
/// <list type="bullet">
/// <item>RMSNorm <c>Mul(x, x) | Pow(x, 2) → ReduceMean(−1) → Add(ε) → Sqrt → Div(x, ·) → Mul(·, γ)</c>
/// → <c>SimplifiedLayerNormalization(x, γ)</c>.</item>
/// <item>tanh GELU <c>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))</c> → <c>com.microsoft.FastGelu</c>.</item>
/// <item>(Paged graphs) RoPE between the token-major transposes the paged rewrite adds:
/// <c>Transpose → Split/Neg/Concat/Mul/Mul/Add → Transpose → Reshape</c> → <c>com.microsoft.RotaryEmbedding</c>
/// on the <c>[1, T, heads·D]</c> rows, its caches the per-token cos/sin the graph computes once per step
/// and its position ids 0…T−1 (so the positions stay the graph's <c>position_ids</c>, evictions included).</item>
/// <item>4-bit/8-bit <c>MatMulNBits</c> siblings that read the same activation with the same
/// settings (q/k/v; gate/up) → one <c>MatMulNBits</c> over the weights concatenated along N, then a
/// <c>Split</c>: the activation is quantized once and one call replaces three (each output column is
/// computed as before). Needs the weights' folder (they are read to be concatenated).</item>
/// <item>(Paged graphs) The value path <c>Reshape(0,0,H,D) → Transpose → Transpose → Reshape(0,0,−1)</c>, an identity, is skipped.</item>
/// <item>A residual sum that feeds a norm, <c>Add(a, b) → SimplifiedLayerNormalization</c> (after the norms above are fused)
/// → <c>com.microsoft.SkipSimplifiedLayerNormalization(a, b, γ)</c>, whose fourth output is the sum when the
/// next residual Add still reads it: one pass over the hidden state instead of two, one node fewer.</item>
/// <item>(With our library: paged graphs, fused q/k/v) <c>Split → Reshape → SimplifiedLayerNormalization → Reshape → RotaryEmbedding</c>
/// for q and for k, v straight from the Split → our <c>ai.serving.QkNormRope</c> (src/KernelsNative): nine nodes
/// per layer become one, with the same position ids and caches.</item>
/// <item>(With our library, fused gate/up) <c>Split → FastGelu(gate) · up</c> → our <c>ai.serving.GeluGate</c>:
/// one pass, no split copies.</item>
/// </list>
/// </remarks>
public static partial class DecoderFusions
{
    public const string MicrosoftDomain = "com.microsoft";

    /// <summary>What was fused, by pattern.</summary>
    public sealed record Counts(int RmsNorms, int Gelus, int Ropes, int IdentityReshapes, int MatMulGroups = 0, int SkipNorms = 0, int QkNormRopes = 0,
        int GeluGates = 0);

    /// <summary>Our fused per-head q/k norm and rotary op (domain ai.serving, src/KernelsNative).</summary>
    public const string QkNormRopeOp = "QkNormRope";

    /// <summary>Our fused gated-GELU op (domain ai.serving, src/KernelsNative).</summary>
    public const string GeluGateOp = "GeluGate";

    /// <param name="modelDirectory">Where the model's external data lies; null leaves MatMulNBits siblings unfused.</param>
    /// <param name="ourOps">The session registers our kernel library (the paged graph does), so our fused ops may be written.</param>
    public static Counts Apply(ModelProto model, string? modelDirectory = null, bool ourOps = false)
    {
        GraphProto graph = model.Graph;
        var fusion = new Fusion(graph);
        int norms = fusion.RmsNorms();
        int gelus = fusion.Gelus();
        int ropes = fusion.Ropes();
        int identities = fusion.IdentityValuePaths();
        long opset = model.OpsetImport.FirstOrDefault(o => o.Domain.Length == 0)?.Version ?? 0;
        int groups = modelDirectory is not null && opset >= 13 ? fusion.MatMulNBitsSiblings(modelDirectory) : 0;
        fusion.Commit();
        // The residual sums are matched on the committed graph, where the fused norms are real nodes.
        var second = new Fusion(graph);
        int skips = second.SkipNorms();
        int qkRopes = ourOps ? second.QkNormRopes() : 0;
        int gates = ourOps ? second.GeluGates() : 0;
        second.Commit();
        if (gelus + ropes + skips > 0 && !model.OpsetImport.Any(o => o.Domain == MicrosoftDomain))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = MicrosoftDomain, Version = 1 });
        }

        if (qkRopes + gates > 0 && !model.OpsetImport.Any(o => o.Domain == SparseFormat.Domain))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = SparseFormat.Domain, Version = 1 });
        }

        return new Counts(norms, gelus, ropes, identities, groups, skips, qkRopes, gates);
    }

    /// <summary>One pass of matching over a graph: its producers, readers and initializers, and the nodes to insert and remove (the patterns: DecoderFusions.*.cs).</summary>
    private sealed partial class Fusion
    {
        private readonly GraphProto _graph;
        private readonly Dictionary<string, NodeProto> _producer = [];
        private readonly Dictionary<string, List<NodeProto>> _readers = [];
        private readonly Dictionary<string, TensorProto> _initializers = [];
        private readonly HashSet<string> _graphOutputs;

        /// <summary>New nodes, each to be placed where the node it replaces stood.</summary>
        private readonly Dictionary<NodeProto, List<NodeProto>> _insertBefore = [];
        private readonly HashSet<NodeProto> _removed = [];

        /// <summary>Each node's index in the graph as this fusion found it (new nodes take the place of the one they replace).</summary>
        private Dictionary<NodeProto, int> Order => _order ??= _graph.Node.Select((node, index) => (node, index)).ToDictionary(pair => pair.node, pair => pair.index);
        private Dictionary<NodeProto, int>? _order;

        public Fusion(GraphProto graph)
        {
            _graph = graph;
            _graphOutputs = [.. graph.Output.Select(output => output.Name)];
            foreach (TensorProto tensor in graph.Initializer)
            {
                _initializers[tensor.Name] = tensor;
            }

            foreach (NodeProto node in graph.Node)
            {
                foreach (string output in node.Output)
                {
                    _producer[output] = node;
                }

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

        /// <summary>Puts the new nodes in and the matched ones out, keeping topological order.</summary>
        public void Commit()
        {
            var nodes = new List<NodeProto>(_graph.Node.Count);
            foreach (NodeProto node in _graph.Node)
            {
                if (_insertBefore.TryGetValue(node, out List<NodeProto>? added))
                {
                    nodes.AddRange(added);
                }
                else if (!_removed.Contains(node))
                {
                    nodes.Add(node);
                }
            }

            _graph.Node.Clear();
            _graph.Node.AddRange(nodes);
            GraphEdits.RemoveDeadNodes(_graph);
            GraphEdits.RemoveUnusedInitializers(_graph);
        }

        /// <summary><paramref name="last"/> gives way to <paramref name="added"/> (which write its output); <paramref name="dead"/> go.</summary>
        private void Replace(NodeProto last, List<NodeProto> added, params NodeProto[] dead)
        {
            _insertBefore[last] = added;
            _removed.UnionWith(dead);
            _removed.Add(last);
            foreach (NodeProto node in added)
            {
                foreach (string output in node.Output)
                {
                    _producer[output] = node;
                }
            }
        }

        private NodeProto? Op(string value, string opType) =>
            _producer.TryGetValue(value, out NodeProto? node) && node.OpType == opType && string.IsNullOrEmpty(node.Domain) && !_removed.Contains(node) ? node : null;

        private NodeProto? SoleReader(string value) =>
            !_graphOutputs.Contains(value) && _readers.TryGetValue(value, out List<NodeProto>? readers) && readers.Count == 1 ? readers[0] : null;

        /// <summary>Every output of <paramref name="node"/> is read only by <paramref name="inside"/> and is no graph output.</summary>
        private bool OnlyReadInside(NodeProto node, NodeProto[] inside) =>
            node.Output.All(output => !_graphOutputs.Contains(output)
                && (!_readers.TryGetValue(output, out List<NodeProto>? readers) || readers.All(inside.Contains)));

        /// <summary>Of a two-input node, the input that passes <paramref name="test"/> and the other one.</summary>
        private static bool TryOtherInput(NodeProto node, Func<string, bool> test, out string matched, out string other)
        {
            matched = other = "";
            if (node.Input.Count != 2)
            {
                return false;
            }

            for (int i = 0; i < 2; i++)
            {
                if (test(node.Input[i]))
                {
                    (matched, other) = (node.Input[i], node.Input[1 - i]);
                    return true;
                }
            }

            return false;
        }

        private bool IsShape(string value, long[] expected) => Int64s(value) is { } values && values.SequenceEqual(expected);

        private long[]? Int64s(string value)
        {
            if (Constant(value) is not { } tensor || tensor.DataType != (int)DataType.Int64)
            {
                return null;
            }

            return tensor.Int64Data.Count > 0 ? [.. tensor.Int64Data] : MemoryMarshal.Cast<byte, long>(tensor.RawData.Span).ToArray();
        }

        /// <summary>A float initializer with one value, or a Constant node's.</summary>
        private float? Scalar(string value)
        {
            if (Constant(value) is not { } tensor || tensor.DataType != (int)DataType.Float || tensor.Dims.Aggregate(1L, (a, b) => a * b) != 1)
            {
                return null;
            }

            return tensor.FloatData.Count == 1 ? tensor.FloatData[0] : MemoryMarshal.Read<float>(tensor.RawData.Span);
        }

        /// <summary>An initializer stored in the graph, or a Constant node's tensor.</summary>
        private TensorProto? Constant(string value)
        {
            TensorProto? tensor = _initializers.TryGetValue(value, out TensorProto? found) ? found
                : _producer.TryGetValue(value, out NodeProto? node) && node.OpType == "Constant"
                    ? node.Attribute.FirstOrDefault(a => a.Name == "value")?.T
                    : null;
            return tensor is null || tensor.DataLocation == TensorProto.Types.DataLocation.External ? null : tensor;
        }

        private static bool Near(float? value, float expected) => value is { } v && MathF.Abs(v - expected) <= 1e-5f * MathF.Max(1f, MathF.Abs(expected));

        private string Int64Vector(string name, params long[] values) => Int64Initializer(name, [values.Length], values);

        private string Int64Scalar(string name, long value) => Int64Initializer(name, [], [value]);

        private string Int64Initializer(string name, long[] dims, long[] values)
        {
            var tensor = new TensorProto { Name = name, DataType = (int)DataType.Int64 };
            tensor.Dims.AddRange(dims);
            tensor.Int64Data.AddRange(values);
            _graph.Initializer.Add(tensor);
            _initializers[name] = tensor;
            return name;
        }

        private static string Add(List<NodeProto> nodes, string opType, string name, string[] inputs)
        {
            var node = new NodeProto { Name = name, OpType = opType };
            node.Input.AddRange(inputs);
            node.Output.Add(name + "/output_0");
            nodes.Add(node);
            return node.Output[0];
        }
    }
}
