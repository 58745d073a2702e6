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
public static class DecoderFusions
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

    private sealed class Fusion
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

        public int RmsNorms()
        {
            int count = 0;
            foreach (NodeProto sqrt in _graph.Node.Where(node => node.OpType == "Sqrt").ToList())
            {
                if (Op(sqrt.Input[0], "Add") is not { } addEps
                    || !TryOtherInput(addEps, input => Op(input, "ReduceMean") is not null, out string meanValue, out string epsValue)
                    || Scalar(epsValue) is not { } eps
                    || Op(meanValue, "ReduceMean") is not { } mean
                    || !ReducesLastAxis(mean)
                    || SquareOf(mean.Input[0]) is not { } x
                    || SoleReader(sqrt.Output[0]) is not { OpType: "Div" } div
                    || div.Input[0] != x || div.Input[1] != sqrt.Output[0]
                    || SoleReader(div.Output[0]) is not { OpType: "Mul" } scale)
                {
                    continue;
                }

                string gamma = scale.Input[0] == div.Output[0] ? scale.Input[1] : scale.Input[0];
                NodeProto square = _producer[mean.Input[0]];
                if (!OnlyReadInside(square, [mean]) || !OnlyReadInside(mean, [addEps]) || !OnlyReadInside(addEps, [sqrt]))
                {
                    continue;
                }

                var fused = new NodeProto { Name = scale.Name + "/SimplifiedLayerNormalization", OpType = "SimplifiedLayerNormalization" };
                fused.Input.AddRange([x, gamma]);
                fused.Output.Add(scale.Output[0]);
                fused.Attribute.Add(Attr("axis", -1L));
                fused.Attribute.Add(Attr("epsilon", eps));
                fused.Attribute.Add(Attr("stash_type", 1L));
                Replace(scale, [fused], square, mean, addEps, sqrt, div);
                count++;
            }

            return count;
        }

        /// <summary><c>Add(a, b) → SimplifiedLayerNormalization(·, γ)</c> over the last axis → <c>SkipSimplifiedLayerNormalization</c>.</summary>
        public int SkipNorms()
        {
            int count = 0;
            foreach (NodeProto norm in _graph.Node.Where(node => node.OpType == "SimplifiedLayerNormalization" && string.IsNullOrEmpty(node.Domain)).ToList())
            {
                // Both addends must be activations of the norm's shape (SkipSimplifiedLayerNormalization
                // broadcasts neither), so a sum with a constant stays an Add.
                if (norm.Input.Count != 2 || norm.Output.Count != 1
                    || PagedAttentionRewrite.IntAttribute(norm, "axis") is not (null or -1)
                    || Op(norm.Input[0], "Add") is not { } add
                    || add.Input.Count != 2 || add.Input.Any(input => Constant(input) is not null || _initializers.ContainsKey(input)))
                {
                    continue;
                }

                // The fused node stands where the norm stood (γ, often 1 + w computed just before the
                // norm, is ready there), so every other reader of the sum must come later.
                List<NodeProto> others = [.. _readers[add.Output[0]].Where(reader => reader != norm)];
                if (others.Any(reader => Order[reader] < Order[norm]))
                {
                    continue;
                }

                bool sumReadElsewhere = _graphOutputs.Contains(add.Output[0]) || others.Count > 0;
                var fused = new NodeProto { Name = norm.Name + "/Skip", OpType = "SkipSimplifiedLayerNormalization", Domain = MicrosoftDomain };
                fused.Input.AddRange([add.Input[0], add.Input[1], norm.Input[1]]);
                fused.Output.Add(norm.Output[0]);
                if (sumReadElsewhere)
                {
                    fused.Output.AddRange(["", "", add.Output[0]]);
                }

                fused.Attribute.Add(Attr("epsilon", norm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F ?? 1e-5f));
                Replace(norm, [fused], add);
                count++;
            }

            return count;
        }

        /// <summary>A q/k/v Split whose q and k outputs each run the per-head norm and rotary chain → one <see cref="QkNormRopeOp"/>.</summary>
        public int QkNormRopes()
        {
            int count = 0;
            foreach (NodeProto split in _graph.Node.Where(node => node.OpType == "Split" && string.IsNullOrEmpty(node.Domain) && node.Output.Count == 3).ToList())
            {
                if (PagedAttentionRewrite.IntAttribute(split, "axis") is not -1
                    || split.Input.Count != 2 || Int64s(split.Input[1]) is not [long qWidth, long kWidth, long vWidth]
                    || NormRopeChain(split.Output[0], qWidth) is not { } q || NormRopeChain(split.Output[1], kWidth) is not { } k
                    || q.HeadSize != k.HeadSize || q.Heads * q.HeadSize != qWidth || k.Heads * k.HeadSize != kWidth || vWidth != kWidth
                    || !q.Rope.Input.Skip(1).SequenceEqual(k.Rope.Input.Skip(1)) || q.Rope.Input.Count != 4
                    || q.Norm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F is not { } epsilon
                    || k.Norm.Attribute.FirstOrDefault(a => a.Name == "epsilon")?.F != epsilon)
                {
                    continue;
                }

                NodeProto[] chain = [split, .. q.Nodes, .. k.Nodes];
                NodeProto last = chain.MaxBy(node => Order[node])!;
                var fused = new NodeProto { Name = split.Name + "/" + QkNormRopeOp, OpType = QkNormRopeOp, Domain = SparseFormat.Domain };
                fused.Input.AddRange([split.Input[0], q.Norm.Input[1], k.Norm.Input[1], q.Rope.Input[1], q.Rope.Input[2], q.Rope.Input[3]]);
                fused.Output.AddRange([q.Rope.Output[0], k.Rope.Output[0], split.Output[2]]);
                fused.Attribute.Add(Attr("num_heads", q.Heads));
                fused.Attribute.Add(Attr("kv_num_heads", k.Heads));
                fused.Attribute.Add(Attr("epsilon", epsilon));
                Replace(last, [fused], [.. chain.Where(node => node != last)]);
                count++;
            }

            return count;
        }

        private sealed record NormRope(long Heads, long HeadSize, NodeProto Norm, NodeProto Rope, NodeProto[] Nodes);

        /// <summary>
        /// <c>rows → Reshape(0, 0, heads, D) → SimplifiedLayerNormalization(−1) → Reshape(0, 0, −1) →
        /// RotaryEmbedding(interleaved 0, whole head)</c>, each value read only by the next. GenAI's builder
        /// writes the reshapes as <c>(0, −1, D)</c> and <c>(0, −1, width)</c>: the same rows, normed per head.
        /// </summary>
        private NormRope? NormRopeChain(string rows, long width)
        {
            if (SoleReader(rows) is not { OpType: "Reshape" } heads || !string.IsNullOrEmpty(heads.Domain) || heads.Input[0] != rows
                || HeadShape(heads.Input[1], width) is not (long headCount, long headSize) || headSize % 2 != 0
                || SoleReader(heads.Output[0]) is not { OpType: "SimplifiedLayerNormalization" } norm || !string.IsNullOrEmpty(norm.Domain)
                || norm.Input.Count != 2 || norm.Output.Count != 1 || norm.Input[0] != heads.Output[0]
                || PagedAttentionRewrite.IntAttribute(norm, "axis") is not (null or -1)
                || SoleReader(norm.Output[0]) is not { OpType: "Reshape" } flatten || !string.IsNullOrEmpty(flatten.Domain)
                || flatten.Input[0] != norm.Output[0] || !(IsShape(flatten.Input[1], [0, 0, -1]) || IsShape(flatten.Input[1], [0, -1, width]))
                || SoleReader(flatten.Output[0]) is not { OpType: "RotaryEmbedding" } rope || rope.Domain != MicrosoftDomain
                || rope.Input[0] != flatten.Output[0]
                || PagedAttentionRewrite.IntAttribute(rope, "interleaved") is not (null or 0)
                || PagedAttentionRewrite.IntAttribute(rope, "rotary_embedding_dim") is not (null or 0)
                || PagedAttentionRewrite.IntAttribute(rope, "is_packed_batching") is not (null or 0)
                || rope.Attribute.Any(a => a.Name == "scale" && a.F != 1f))
            {
                return null;
            }

            return new NormRope(headCount, headSize, norm, rope, [heads, norm, flatten, rope]);
        }

        /// <summary>(heads, D) of a per-head reshape of rows <paramref name="width"/> wide: <c>(0, 0, heads, D)</c> or <c>(0, −1, D)</c>.</summary>
        private (long Heads, long HeadSize)? HeadShape(string shape, long width) => Int64s(shape) switch
        {
            [0, 0, long heads and > 0, long size and > 0] => (heads, size),
            [0, -1, long size and > 0] when width % size == 0 => (width / size, size),
            _ => null,
        };

        /// <summary><c>Split(x, [I, I]) → Mul(FastGelu(gate), up)</c> → <see cref="GeluGateOp"/>(x).</summary>
        public int GeluGates()
        {
            int count = 0;
            foreach (NodeProto gelu in _graph.Node.Where(node => node.OpType == "FastGelu" && node.Domain == MicrosoftDomain && node.Input.Count == 1).ToList())
            {
                if (!_producer.TryGetValue(gelu.Input[0], out NodeProto? split) || split.OpType != "Split" || !string.IsNullOrEmpty(split.Domain)
                    || split.Output.Count != 2 || split.Output[0] != gelu.Input[0]
                    || PagedAttentionRewrite.IntAttribute(split, "axis") is not -1
                    || split.Input.Count != 2 || Int64s(split.Input[1]) is not [long gateWidth, long upWidth] || gateWidth != upWidth
                    || SoleReader(gelu.Output[0]) is not { OpType: "Mul" } mul || !string.IsNullOrEmpty(mul.Domain)
                    || !TryOtherInput(mul, input => input == gelu.Output[0], out _, out string up) || up != split.Output[1]
                    || SoleReader(split.Output[0]) != gelu || SoleReader(split.Output[1]) != mul)
                {
                    continue;
                }

                var fused = new NodeProto { Name = mul.Name + "/" + GeluGateOp, OpType = GeluGateOp, Domain = SparseFormat.Domain };
                fused.Input.Add(split.Input[0]);
                fused.Output.Add(mul.Output[0]);
                Replace(mul, [fused], split, gelu);
                count++;
            }

            return count;
        }

        public int Gelus()
        {
            int count = 0;
            foreach (NodeProto tanh in _graph.Node.Where(node => node.OpType == "Tanh").ToList())
            {
                // tanh(c·inner), inner = x + 0.044715·x³, then (tanh + 1) · (0.5·x).
                if (Op(tanh.Input[0], "Mul") is not { } scaled
                    || !TryOtherInput(scaled, input => Op(input, "Add") is not null, out string innerValue, out string cValue)
                    || !Near(Scalar(cValue), MathF.Sqrt(2f / MathF.PI))
                    || Op(innerValue, "Add") is not { } inner
                    || !TryOtherInput(inner, input => Op(input, "Mul") is { } m && CubeCoefficient(m) is not null, out string cubeTermValue, out string x)
                    || Op(cubeTermValue, "Mul") is not { } cubeTerm
                    || CubeCoefficient(cubeTerm) is not { } cube
                    || CubeOf(cube) != x
                    || SoleReader(tanh.Output[0]) is not { OpType: "Add" } plusOne
                    || !TryOtherInput(plusOne, input => input == tanh.Output[0], out _, out string oneValue)
                    || !Near(Scalar(oneValue), 1f)
                    || SoleReader(plusOne.Output[0]) is not { OpType: "Mul" } product
                    || !TryOtherInput(product, input => input == plusOne.Output[0], out _, out string halfValue)
                    || Op(halfValue, "Mul") is not { } half
                    || !TryOtherInput(half, input => input == x, out _, out string halfConstant)
                    || !Near(Scalar(halfConstant), 0.5f))
                {
                    continue;
                }

                NodeProto square = _producer[cube.Input[0] == x ? cube.Input[1] : cube.Input[0]];
                NodeProto[] chain = [square, cube, cubeTerm, inner, scaled, tanh, plusOne, half];
                if (!chain.All(node => OnlyReadInside(node, [.. chain, product])))
                {
                    continue;
                }

                var fused = new NodeProto { Name = product.Name + "/FastGelu", OpType = "FastGelu", Domain = MicrosoftDomain };
                fused.Input.Add(x);
                fused.Output.Add(product.Output[0]);
                Replace(product, [fused], chain);
                count++;
            }

            return count;
        }

        /// <summary>The RoPE chains that feed PagedAttention's q and k.</summary>
        public int Ropes()
        {
            var caches = new Dictionary<string, (string Cos, string Sin, string Positions)>();
            int count = 0;
            foreach (NodeProto attention in _graph.Node.Where(node => node.OpType == PagedAttentionRewrite.OpType).ToList())
            {
                for (int slot = 0; slot < 2; slot++)
                {
                    if (TryRope(attention.Input[slot], caches))
                    {
                        count++;
                    }
                }
            }

            return count;
        }

        private bool TryRope(string rows, Dictionary<string, (string Cos, string Sin, string Positions)> caches)
        {
            if (Op(rows, "Reshape") is not { } reshape
                || Op(reshape.Input[0], "Transpose") is not { } back || !IsPerm0213(back)
                || Op(back.Input[0], "Add") is not { } sum
                || Op(sum.Input[0], "Mul") is not { } first || Op(sum.Input[1], "Mul") is not { } second)
            {
                return false;
            }

            // One product reads the head-major x and cos, the other Concat(Neg(x₂), x₁) and sin.
            NodeProto? concat = null;
            NodeProto cosProduct = first, sinProduct = second;
            foreach (var (candidate, other) in new[] { (first, second), (second, first) })
            {
                if (candidate.Input.Select(input => Op(input, "Concat")).FirstOrDefault(node => node is not null) is { } found)
                {
                    concat = found;
                    sinProduct = candidate;
                    cosProduct = other;
                    break;
                }
            }

            if (concat is null || concat.Input.Count != 2
                || Op(concat.Input[0], "Neg") is not { } neg
                || Op(neg.Input[0], "Split") is not { } split || split.Output.Count != 2
                || neg.Input[0] != split.Output[1] || concat.Input[1] != split.Output[0]
                || PagedAttentionRewrite.IntAttribute(split, "axis") is not (-1 or 3)
                || split.Input.Count != 2 || Int64s(split.Input[1]) is not [var h1, var h2] || h1 != h2
                || PagedAttentionRewrite.IntAttribute(concat, "axis") is not (-1 or 3))
            {
                return false;
            }

            string headMajor = split.Input[0];
            if (!TryOtherInput(cosProduct, input => input == headMajor, out _, out string cos)
                || !TryOtherInput(sinProduct, input => input == concat.Output[0], out _, out string sin)
                || Op(headMajor, "Transpose") is not { } forward || !IsPerm0213(forward)
                || CacheSource(cos, "Cos") is not { } angles || CacheSource(sin, "Sin") != angles)
            {
                return false;
            }

            NodeProto[] chain = [forward, split, neg, concat, cosProduct, sinProduct, sum, back];
            if (!chain.All(node => OnlyReadInside(node, [.. chain, reshape])))
            {
                return false;
            }

            var nodes = new List<NodeProto>();
            if (!caches.TryGetValue(angles, out var cache))
            {
                cache = RotaryCaches(nodes, angles);
                caches[angles] = cache;
            }

            string name = reshape.Name + "/rotary";
            var flat = new NodeProto { Name = name + "/Reshape", OpType = "Reshape" };
            flat.Input.AddRange([forward.Input[0], Int64Vector(name + "/shape", 0, 0, -1)]);
            flat.Output.Add(name + "/Reshape/output_0");
            var rotary = new NodeProto { Name = name + "/RotaryEmbedding", OpType = "RotaryEmbedding", Domain = MicrosoftDomain };
            rotary.Input.AddRange([flat.Output[0], cache.Positions, cache.Cos, cache.Sin]);
            rotary.Output.Add(reshape.Output[0]);
            rotary.Attribute.Add(Attr("interleaved", 0L));
            nodes.AddRange([flat, rotary]);
            Replace(reshape, nodes, chain);
            return true;
        }

        /// <summary>
        /// <c>Unsqueeze(Cos|Sin(Concat(a, a, axis = −1)), axis 1)</c> → <c>a</c>, the angles
        /// <c>[1, T, D/2]</c> of each token.
        /// </summary>
        private string? CacheSource(string value, string function)
        {
            if (Op(value, "Unsqueeze") is not { } unsqueeze
                || Op(unsqueeze.Input[0], function) is not { } trig
                || Op(trig.Input[0], "Concat") is not { } both
                || both.Input.Count != 2 || both.Input[0] != both.Input[1]
                || PagedAttentionRewrite.IntAttribute(both, "axis") != -1)
            {
                return null;
            }

            return both.Input[0];
        }

        /// <summary>cos and sin of the angles as <c>[T, D/2]</c> caches, and position ids <c>[1, T]</c> = 0…T−1 into them.</summary>
        private (string Cos, string Sin, string Positions) RotaryCaches(List<NodeProto> nodes, string angles)
        {
            string name = $"{angles}/rotary_cache";
            string rows = Add(nodes, "Flatten", name + "/rows", [angles]);
            nodes[^1].Attribute.Add(Attr("axis", 2L));
            string cos = Add(nodes, "Cos", name + "/cos", [rows]);
            string sin = Add(nodes, "Sin", name + "/sin", [rows]);
            string shape = Add(nodes, "Shape", name + "/shape", [rows]);
            string count = Add(nodes, "Gather", name + "/count", [shape, Int64Scalar(name + "/zero", 0)]);
            string range = Add(nodes, "Range", name + "/range", [Int64Scalar(name + "/start", 0), count, Int64Scalar(name + "/step", 1)]);
            string positions = Add(nodes, "Unsqueeze", name + "/positions", [range, Int64Vector(name + "/axis0", 0)]);
            return (cos, sin, positions);
        }

        /// <summary><c>Reshape(0,0,H,D) → Transpose(0,2,1,3) → Transpose(0,2,1,3) → Reshape(0,0,−1)</c> before PagedAttention's v: the input as it was.</summary>
        public int IdentityValuePaths()
        {
            int count = 0;
            foreach (NodeProto attention in _graph.Node.Where(node => node.OpType == PagedAttentionRewrite.OpType).ToList())
            {
                if (Op(attention.Input[2], "Reshape") is { } flat && IsShape(flat.Input[1], [0, 0, -1])
                    && Op(flat.Input[0], "Transpose") is { } back && IsPerm0213(back)
                    && Op(back.Input[0], "Transpose") is { } forward && IsPerm0213(forward)
                    && Op(forward.Input[0], "Reshape") is { } split && IsFourDimSplit(split.Input[1])
                    && OnlyReadInside(back, [flat]) && OnlyReadInside(forward, [back]))
                {
                    attention.Input[2] = split.Input[0];
                    _removed.UnionWith([flat, back, forward]);
                    count++;
                }
            }

            return count;
        }

        /// <summary>MatMulNBits nodes that read one activation with the same K, bits, block and accuracy → one node and a Split.</summary>
        public int MatMulNBitsSiblings(string directory)
        {
            int count = 0;
            var groups = _graph.Node
                .Where(node => node.OpType == "MatMulNBits" && node.Domain == MicrosoftDomain && !_removed.Contains(node) && node.Input.Count is 3 or 4)
                .GroupBy(node => (node.Input[0], node.Input.Count, Int(node, "K"), Int(node, "bits"), Int(node, "block_size"), Int(node, "accuracy_level")))
                .Where(group => group.Count() > 1)
                .ToList();
            foreach (var group in groups)
            {
                List<NodeProto> members = [.. group];
                var tensors = members.Select(node => node.Input.Skip(1).Select(name => _initializers.GetValueOrDefault(name)).ToArray()).ToList();
                bool shareable = tensors.All(t => t.All(tensor => tensor is not null))
                    && members.All(node => node.Input.Skip(1).All(name => _readers.TryGetValue(name, out List<NodeProto>? r) && r.Count == 1))
                    && members.All(node => node.Output.Count == 1 && !_graphOutputs.Contains(node.Output[0]));
                if (!shareable)
                {
                    continue;
                }

                string name = members[0].Name + "/fused";
                var fused = new NodeProto { Name = name, OpType = "MatMulNBits", Domain = MicrosoftDomain };
                fused.Input.Add(members[0].Input[0]);
                for (int slot = 0; slot < tensors[0].Length; slot++)
                {
                    fused.Input.Add(Concatenate(name + "/" + slot, [.. tensors.Select(t => t[slot]!)], directory));
                }

                long[] widths = [.. members.Select(node => Int(node, "N"))];
                fused.Output.Add(name + "/output_0");
                fused.Attribute.AddRange(members[0].Attribute.Where(a => a.Name != "N").Select(a => a.Clone()));
                fused.Attribute.Add(Attr("N", widths.Sum()));
                var split = new NodeProto { Name = name + "/Split", OpType = "Split" };
                split.Input.AddRange([fused.Output[0], Int64Vector(name + "/widths", widths)]);
                split.Output.AddRange(members.Select(node => node.Output[0]));
                split.Attribute.Add(Attr("axis", -1L));
                Replace(members[0], [fused, split], [.. members.Skip(1)]);
                count++;
            }

            return count;
        }

        private static long Int(NodeProto node, string name) => PagedAttentionRewrite.IntAttribute(node, name) ?? -1;

        /// <summary>Tensors stacked along their first axis, their bytes one after another (N-major, as MatMulNBits stores B, scales and zero points).</summary>
        private string Concatenate(string name, TensorProto[] parts, string directory)
        {
            long total = parts.Sum(TensorData.ByteLength);
            var bytes = new byte[total];
            long offset = 0;
            foreach (TensorProto part in parts)
            {
                long length = TensorData.ByteLength(part);
                TensorData.ReadBytes(part, directory, bytes.AsSpan((int)offset, (int)length));
                offset += length;
            }

            var tensor = new TensorProto { Name = name, DataType = parts[0].DataType, RawData = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(bytes) };
            tensor.Dims.AddRange(parts[0].Dims);
            tensor.Dims[0] = parts.Sum(part => part.Dims[0]);
            _graph.Initializer.Add(tensor);
            _initializers[name] = tensor;
            return name;
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

        /// <summary>x for <c>Mul(x, x)</c> or <c>Pow(x, 2)</c>.</summary>
        private string? SquareOf(string value)
        {
            if (Op(value, "Mul") is { } mul && mul.Input.Count == 2 && mul.Input[0] == mul.Input[1])
            {
                return mul.Input[0];
            }

            return Op(value, "Pow") is { } pow && Near(Scalar(pow.Input[1]), 2f) ? pow.Input[0] : null;
        }

        /// <summary>Of <c>Mul(cube, 0.044715)</c>, the cube's node.</summary>
        private NodeProto? CubeCoefficient(NodeProto mul) =>
            TryOtherInput(mul, input => Near(Scalar(input), 0.044715f), out _, out string cube) ? Op(cube, "Mul") : null;

        /// <summary>x for <c>Mul(Mul(x, x), x)</c> in either order.</summary>
        private string? CubeOf(NodeProto cube)
        {
            for (int i = 0; i < 2; i++)
            {
                if (SquareOf(cube.Input[i]) is { } x && cube.Input[1 - i] == x)
                {
                    return x;
                }
            }

            return null;
        }

        private bool ReducesLastAxis(NodeProto mean)
        {
            if (PagedAttentionRewrite.IntAttribute(mean, "keepdims") is 0)
            {
                return false;
            }

            AttributeProto? axes = mean.Attribute.FirstOrDefault(a => a.Name == "axes");
            if (axes is not null)
            {
                return axes.Ints.Count == 1 && axes.Ints[0] == -1;
            }

            return mean.Input.Count == 2 && IsShape(mean.Input[1], [-1]);
        }

        private static bool IsPerm0213(NodeProto transpose) =>
            transpose.Attribute.FirstOrDefault(a => a.Name == "perm") is { } perm && perm.Ints.SequenceEqual([0L, 2, 1, 3]);

        private bool IsShape(string value, long[] expected) => Int64s(value) is { } values && values.SequenceEqual(expected);

        private bool IsFourDimSplit(string value) => Int64s(value) is { Length: 4 } values && values[0] == 0 && values[1] == 0 && values[2] > 0 && values[3] > 0;

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
