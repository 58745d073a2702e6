using System.Globalization;
using System.Runtime.InteropServices;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>Reads the values of an initializer, inline or from external data.</summary>
public static class TensorData
{
    public static long ElementCount(TensorProto tensor)
    {
        long count = 1;
        foreach (long dim in tensor.Dims)
        {
            count *= dim;
        }

        return count;
    }

    /// <summary>
    /// The float32 values of <paramref name="tensor"/>; external data is resolved against
    /// <paramref name="modelDirectory"/>, the folder of the .onnx file.
    /// </summary>
    public static float[] ReadFloats(TensorProto tensor, string modelDirectory)
    {
        if (tensor.DataType != (int)TensorProto.Types.DataType.Float)
        {
            throw new InvalidDataException($"tensor '{tensor.Name}' has data type {tensor.DataType}, not float32");
        }

        long count = ElementCount(tensor);
        if (tensor.FloatData.Count > 0)
        {
            return [.. tensor.FloatData];
        }

        var values = new float[count];
        ReadBytes(tensor, modelDirectory, MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    /// <summary>Fills <paramref name="destination"/> with the tensor's raw little-endian bytes.</summary>
    public static void ReadBytes(TensorProto tensor, string modelDirectory, Span<byte> destination)
    {
        if (tensor.DataLocation != TensorProto.Types.DataLocation.External)
        {
            if (tensor.RawData.Length != destination.Length)
            {
                throw new InvalidDataException(
                    $"tensor '{tensor.Name}' holds {tensor.RawData.Length} bytes of raw data, expected {destination.Length}");
            }

            tensor.RawData.Span.CopyTo(destination);
            return;
        }

        var (location, offset, length) = ExternalReference(tensor);
        if (length >= 0 && length != destination.Length)
        {
            throw new InvalidDataException($"tensor '{tensor.Name}' has external length {length}, expected {destination.Length}");
        }

        string path = Path.Combine(modelDirectory, location);
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"external data file of tensor '{tensor.Name}' not found: {path}", path);
        }

        using FileStream stream = File.OpenRead(path);
        if (offset + destination.Length > stream.Length)
        {
            throw new InvalidDataException(
                $"'{path}' is truncated: tensor '{tensor.Name}' needs bytes {offset}..{offset + destination.Length}, the file has {stream.Length}");
        }

        stream.Position = offset;
        stream.ReadExactly(destination);
    }

    /// <summary>The data file an external tensor names, relative to the model's folder.</summary>
    public static string ExternalLocation(TensorProto tensor) => ExternalReference(tensor).Location;

    /// <summary>Bytes of the tensor's data: inline, or as its external reference gives (or implies by type and shape).</summary>
    public static long ByteLength(TensorProto tensor)
    {
        if (tensor.DataLocation != TensorProto.Types.DataLocation.External)
        {
            return tensor.RawData.Length;
        }

        long length = ExternalReference(tensor).Length;
        return length >= 0 ? length : ElementCount(tensor) * ElementSize(tensor);
    }

    private static int ElementSize(TensorProto tensor) => (TensorProto.Types.DataType)tensor.DataType switch
    {
        TensorProto.Types.DataType.Float or TensorProto.Types.DataType.Int32 or TensorProto.Types.DataType.Uint32 => 4,
        TensorProto.Types.DataType.Double or TensorProto.Types.DataType.Int64 or TensorProto.Types.DataType.Uint64 => 8,
        TensorProto.Types.DataType.Float16 or TensorProto.Types.DataType.Bfloat16 or TensorProto.Types.DataType.Int16 or TensorProto.Types.DataType.Uint16 => 2,
        TensorProto.Types.DataType.Int8 or TensorProto.Types.DataType.Uint8 or TensorProto.Types.DataType.Bool => 1,
        var type => throw new InvalidDataException($"tensor '{tensor.Name}' of type {type} has no external length"),
    };

    private static (string Location, long Offset, long Length) ExternalReference(TensorProto tensor)
    {
        string? location = null;
        long offset = 0, length = -1;
        foreach (StringStringEntryProto entry in tensor.ExternalData)
        {
            switch (entry.Key)
            {
                case "location": location = entry.Value; break;
                case "offset": offset = long.Parse(entry.Value, CultureInfo.InvariantCulture); break;
                case "length": length = long.Parse(entry.Value, CultureInfo.InvariantCulture); break;
            }
        }

        if (string.IsNullOrEmpty(location) || Path.IsPathRooted(location) || location.Contains("..", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"tensor '{tensor.Name}' has an invalid external data location '{location}'");
        }

        return (location, offset, length);
    }
}
