using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using static Serving.Runtime.Onnx.GraphBuilder;

namespace Serving.Runtime.Models;

// DecoderFusions: RMSNorm, the residual sum into a norm (SkipSimplifiedLayerNormalization) and our fused per-head q/k norm + rotary (QkNormRope).
public static partial class DecoderFusions
{
    private sealed partial class Fusion
    {
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

        /// <summary>x for <c>Mul(x, x)</c> or <c>Pow(x, 2)</c>.</summary>
        private string? SquareOf(string value)
        {
            if (Op(value, "Mul") is { } mul && mul.Input.Count == 2 && mul.Input[0] == mul.Input[1])
            {
                return mul.Input[0];
            }

            return Op(value, "Pow") is { } pow && Near(Scalar(pow.Input[1]), 2f) ? pow.Input[0] : null;
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
    }
}
