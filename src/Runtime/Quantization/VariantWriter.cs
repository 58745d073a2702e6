using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Quantization;

/// <summary>
/// Streams one variant's tensors into its <c>_data</c> file, one source tensor at a time (peak
/// memory: the largest weight and its quantized form), then rewrites and saves the graph.
/// </summary>
internal sealed class VariantWriter(QuantizePlan plan, QuantizeOptions options, string sourceDirectory, ActivationAwareScaling.Scales? scales = null)
{
    private readonly BlockSpec _spec = new(options.Dtype == "q8" ? 8 : 4, options.BlockSize, options.Symmetric);

    /// <summary>The embedding and its tied head: <see cref="QuantizeOptions.EmbeddingBits"/>, else the variant's bits.</summary>
    private readonly BlockSpec _embeddingSpec = new(options.EmbeddingBits ?? (options.Dtype == "q8" ? 8 : 4), options.BlockSize, options.Symmetric);
    private readonly bool _fp16 = options.Dtype == "fp16";

    /// <summary>Writes <paramref name="outputOnnx"/> and its data; returns the bytes of the changed weights before and after.</summary>
    public (long Before, long After) Write(ModelProto model, string outputOnnx, IProgress<(long Done, long Total)>? progress)
    {
        var linear = plan.Linear.GroupBy(t => t.Weight.Name).ToDictionary(g => g.Key, g => g.First());
        long total = model.Graph.Initializer.Sum(TensorData.ByteLength), done = 0, before = 0, after = 0;
        Directory.CreateDirectory(Path.GetDirectoryName(outputOnnx)!);
        using (ExternalDataWriter writer = ExternalDataWriter.Create(outputOnnx + "_data"))
        {
            var tensors = model.Graph.Initializer.ToList();
            model.Graph.Initializer.Clear();
            foreach (TensorProto tensor in tensors)
            {
                done += TensorData.ByteLength(tensor);
                IReadOnlyList<TensorProto>? replaced = Replace(tensor, linear);
                if (replaced is null)
                {
                    if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
                    {
                        writer.CopyExternal(tensor, sourceDirectory);
                    }

                    model.Graph.Initializer.Add(tensor);
                }
                else
                {
                    before += TensorData.ByteLength(tensor);
                    foreach (TensorProto written in replaced)
                    {
                        after += written.RawData.Length;
                        writer.MoveToExternal(written);
                        model.Graph.Initializer.Add(written);
                    }
                }

                progress?.Report((done, total));
            }
        }

        Rewrite(model);
        GraphEdits.RemoveUnusedInitializers(model.Graph);
        OnnxModelFile.Save(model, outputOnnx, externalThresholdBytes: long.MaxValue);
        return (before, after);
    }

    /// <summary>The tensors that take <paramref name="tensor"/>'s place, or null to keep it.</summary>
    private List<TensorProto>? Replace(TensorProto tensor, Dictionary<string, SparseTarget> linear)
    {
        if (_fp16)
        {
            return plan.Fp16.Contains(tensor.Name) ? [ToFp16(tensor)] : null;
        }

        if (linear.TryGetValue(tensor.Name, out SparseTarget? target))
        {
            float[] weight = TensorData.ReadFloats(tensor, sourceDirectory);
            scales?.Apply(tensor.Name, weight, target.K, target.N);
            return [.. QuantizeRewrite.Tensors(tensor, BlockQuantizer.QuantizeTransposed(weight, target.K, target.N, _spec))];
        }

        if (scales is not null && scales.NormWeights.TryGetValue(tensor.Name, out float[]? norm))
        {
            // The norm in front of a scaled group divides by the channel scales: same name, new values.
            var folded = new TensorProto { Name = tensor.Name, DataType = tensor.DataType };
            folded.Dims.AddRange(tensor.Dims);
            folded.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(norm.AsSpan()));
            return [folded];
        }

        if (plan.Embedding is { } embedding && embedding.Weight.Name == tensor.Name)
        {
            float[] weight = TensorData.ReadFloats(tensor, sourceDirectory);
            QuantizedMatrix matrix = BlockQuantizer.Quantize(weight, embedding.Vocab, embedding.Hidden, _embeddingSpec);
            List<TensorProto> tensors = [.. QuantizeRewrite.Tensors(tensor, matrix)];
            if (!_embeddingSpec.Symmetric && _embeddingSpec.Bits == 4)
            {
                tensors.Add(QuantizeRewrite.GatherZeroPoints(tensor, matrix));
            }

            return tensors;
        }

        return null;
    }

    private TensorProto ToFp16(TensorProto tensor)
    {
        float[] values = TensorData.ReadFloats(tensor, sourceDirectory);
        var halves = new Half[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            halves[i] = (Half)values[i];
        }

        var converted = new TensorProto
        {
            Name = QuantizeRewrite.Fp16Name(tensor.Name),
            DataType = (int)DataType.Float16,
            RawData = Google.Protobuf.UnsafeByteOperations.UnsafeWrap(System.Runtime.InteropServices.MemoryMarshal.AsBytes(halves.AsSpan()).ToArray()),
        };
        converted.Dims.AddRange(tensor.Dims);
        return converted;
    }

    private void Rewrite(ModelProto model)
    {
        if (_fp16)
        {
            foreach (string weight in plan.Fp16)
            {
                QuantizeRewrite.CastFromFp16(model.Graph, weight);
            }

            return;
        }

        foreach (SparseTarget target in plan.Linear)
        {
            QuantizeRewrite.RewriteLinear(model.Graph, target, _spec, options.AccuracyLevel);
        }

        if (plan.Embedding is { } embedding)
        {
            int opset = (int)(model.OpsetImport.FirstOrDefault(o => o.Domain.Length == 0)?.Version ?? 17);
            QuantizeRewrite.RewriteEmbedding(model.Graph, embedding, _embeddingSpec, options.AccuracyLevel, opset);
        }

        QuantizeRewrite.ImportDomain(model);
    }
}
