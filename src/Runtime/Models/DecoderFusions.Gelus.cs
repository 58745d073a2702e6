using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Models;

// DecoderFusions: tanh GELU (FastGelu) and our fused gated GELU (GeluGate).
public static partial class DecoderFusions
{
    private sealed partial class Fusion
    {
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
    }
}
