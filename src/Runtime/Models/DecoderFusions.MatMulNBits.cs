using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models;

// DecoderFusions: MatMulNBits siblings on one activation → one MatMulNBits over the concatenated weights, then a Split.
public static partial class DecoderFusions
{
    private sealed partial class Fusion
    {
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
    }
}
