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
    /// Writes the model to <paramref name="path"/> without changing <paramref name="model"/>.
    /// Initializers holding more than <paramref name="externalThresholdBytes"/> bytes inline
    /// are appended to <c>{file name}_data</c> beside it (64-byte aligned), so the protobuf
    /// stays small; pass <see cref="long.MaxValue"/> to keep them inline. A model loaded from
    /// another folder names that folder in <paramref name="sourceDirectory"/>: its external
    /// tensors are then copied too, so the saved model stands on its own.
    /// </summary>
    public static void Save(ModelProto model, string path, long externalThresholdBytes = 1024, string? sourceDirectory = null)
    {
        string directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
        Directory.CreateDirectory(directory);
        model = model.Clone();
        bool relocate = sourceDirectory is not null && Path.GetFullPath(sourceDirectory).TrimEnd('/') != directory.TrimEnd('/');
        WriteExternalData(model.Graph, path, externalThresholdBytes, relocate ? sourceDirectory : null);
        CheckExternalDataExists(model.Graph, directory);

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

    private static void WriteExternalData(GraphProto graph, string modelPath, long thresholdBytes, string? copyFrom)
    {
        var moving = graph.Initializer.Where(tensor => tensor.RawData.Length > thresholdBytes
            || (copyFrom is not null && tensor.DataLocation == TensorProto.Types.DataLocation.External)).ToList();
        if (moving.Count == 0)
        {
            return;
        }

        using var writer = ExternalDataWriter.Append(modelPath + "_data");
        foreach (TensorProto tensor in moving)
        {
            if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
            {
                writer.CopyExternal(tensor, copyFrom!);
            }
            else
            {
                writer.MoveToExternal(tensor);
            }
        }
    }

    /// <summary>A model saved away from its data would only fail later, inside ONNX Runtime.</summary>
    private static void CheckExternalDataExists(GraphProto graph, string directory)
    {
        foreach (TensorProto tensor in graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External))
        {
            string location = TensorData.ExternalLocation(tensor);
            if (!File.Exists(Path.Combine(directory, location)))
            {
                throw new InvalidOperationException(
                    $"tensor '{tensor.Name}' refers to '{location}', which is not in {directory}: pass the model's source folder to copy its data");
            }
        }
    }
}
