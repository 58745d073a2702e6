using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;

namespace Serving.Runtime.Models;

// DecoderFusions: RoPE between the paged rewrite's token-major transposes (RotaryEmbedding) and the identity value path.
public static partial class DecoderFusions
{
    private sealed partial class Fusion
    {
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

        private static bool IsPerm0213(NodeProto transpose) =>
            transpose.Attribute.FirstOrDefault(a => a.Name == "perm") is { } perm && perm.Ints.SequenceEqual([0L, 2, 1, 3]);

        private bool IsFourDimSplit(string value) => Int64s(value) is { Length: 4 } values && values[0] == 0 && values[1] == 0 && values[2] > 0 && values[3] > 0;
    }
}
