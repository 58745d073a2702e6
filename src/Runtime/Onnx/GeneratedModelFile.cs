using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>One weight to write: its name, ONNX dims, and a producer called once, when its turn comes.</summary>
public sealed record GeneratedWeight(string Name, long[] Dims, Func<float[]> Values)
{
    public long ElementCount => Dims.Aggregate(1L, (product, dim) => product * dim);
}

/// <summary>
/// Writes a generated model (our builders' graphs): every weight streamed to
/// <c>{path}_data</c> one at a time, so peak memory stays at the largest tensor, then the
/// graph with opset <paramref name="opset"/> (and version 1 of any other domain its nodes use,
/// <c>com.microsoft</c> for ONNX Runtime's contrib ops), producer "serving".
/// </summary>
public static class GeneratedModelFile
{
    /// <summary>Writes the files; <paramref name="written"/> gets the weight bytes written so far. Returns the total.</summary>
    public static long Write(string path, GraphProto graph, IEnumerable<GeneratedWeight> weights, long irVersion, int opset, Action<long>? written = null)
    {
        long bytes;
        using (var data = ExternalDataWriter.Create(path + "_data"))
        {
            foreach (GeneratedWeight weight in weights)
            {
                float[] values = weight.Values();
                if (values.LongLength != weight.ElementCount)
                {
                    throw new ArgumentException($"weight '{weight.Name}' has {values.LongLength} values, expected {weight.ElementCount}");
                }

                graph.Initializer.Add(data.WriteFloats(weight.Name, weight.Dims, values));
                written?.Invoke(data.BytesWritten);
            }

            bytes = data.BytesWritten;
        }

        var model = new ModelProto
        {
            IrVersion = irVersion,
            ProducerName = "serving",
            ProducerVersion = typeof(GeneratedModelFile).Assembly.GetName().Version?.ToString() ?? "0",
            Graph = graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        foreach (string domain in graph.Node.Select(node => node.Domain).Where(domain => domain.Length > 0).Distinct(StringComparer.Ordinal))
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = 1 });
        }

        OnnxModelFile.Save(model, path, externalThresholdBytes: long.MaxValue);
        return bytes;
    }
}
