using Google.Protobuf;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>
/// Reads and writes ONNX <see cref="ModelProto"/> files. Tensor data may live in the model
/// file (<c>raw_data</c>) or in an external data file beside it (<c>model.onnx_data</c>),
/// which is how models over protobuf's 2 GB limit are stored.
/// </summary>
public static class OnnxModelFile
{
    /// <summary>Protobuf messages cannot exceed 2 GiB; larger models must use external data.</summary>
    public const long ProtobufLimitBytes = int.MaxValue;

    /// <summary>
    /// Parses the graph. External tensor data is not read: the returned initializers keep
    /// their references, to be read with <see cref="TensorData"/> relative to the model's folder.
    /// </summary>
    public static ModelProto Load(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"ONNX model file not found: {path}", path);
        }

        try
        {
            using FileStream stream = File.OpenRead(path);
            var input = new CodedInputStream(stream);
            var model = ModelProto.Parser.ParseFrom(input);
            if (model.Graph is null)
            {
                throw new InvalidDataException($"'{path}' is not an ONNX model: it has no graph");
            }

            return model;
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"'{path}' is not a valid ONNX model: {e.Message}", e);
        }
    }

    /// <summary>
    /// Writes the model. Initializers holding more than <paramref name="externalThresholdBytes"/>
    /// bytes inline are first moved to <c>{file name}_data</c> beside it (appended, 64-byte
    /// aligned), so the protobuf stays small; pass <see cref="long.MaxValue"/> to keep them inline.
    /// </summary>
    public static void Save(ModelProto model, string path, long externalThresholdBytes = 1024)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        MoveLargeTensorsToExternalData(model.Graph, path, externalThresholdBytes);

        long size = model.CalculateSize();
        if (size > ProtobufLimitBytes)
        {
            throw new InvalidOperationException(
                $"the model's protobuf would be {size} bytes, over the 2 GiB limit: store its tensors as external data");
        }

        string temporary = path + ".tmp";
        using (FileStream stream = File.Create(temporary))
        {
            model.WriteTo(stream);
        }

        File.Move(temporary, path, overwrite: true);
    }

    private static void MoveLargeTensorsToExternalData(GraphProto graph, string modelPath, long thresholdBytes)
    {
        var large = graph.Initializer.Where(t => t.RawData.Length > thresholdBytes).ToList();
        if (large.Count == 0)
        {
            return;
        }

        string dataPath = modelPath + "_data";
        using var writer = ExternalDataWriter.Append(dataPath);
        foreach (TensorProto tensor in large)
        {
            writer.MoveToExternal(tensor);
        }
    }
}
