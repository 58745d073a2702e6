using Google.Protobuf;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>
/// Appends tensor bytes to an ONNX external data file and returns tensors that reference them
/// (<c>location</c>, <c>offset</c>, <c>length</c> relative to the model's folder). Writing
/// tensor by tensor keeps peak memory at one tensor when building multi-gigabyte models.
/// </summary>
public sealed class ExternalDataWriter : IDisposable
{
    /// <summary>64-byte alignment lets ONNX Runtime map tensors straight from the file for SIMD loads.</summary>
    private const int Alignment = 64;

    private readonly FileStream _stream;
    private readonly string _location;

    private ExternalDataWriter(FileStream stream, string location)
    {
        _stream = stream;
        _location = location;
    }

    /// <summary>Starts a new data file, replacing any old one.</summary>
    public static ExternalDataWriter Create(string dataPath) =>
        new(new FileStream(dataPath, FileMode.Create, FileAccess.Write, FileShare.Read, 1 << 20), Path.GetFileName(dataPath));

    /// <summary>Appends to an existing data file, or starts one.</summary>
    public static ExternalDataWriter Append(string dataPath) =>
        new(new FileStream(dataPath, FileMode.Append, FileAccess.Write, FileShare.Read, 1 << 20), Path.GetFileName(dataPath));

    public long BytesWritten => _stream.Position;

    /// <summary>A float tensor whose data goes to the external file.</summary>
    public TensorProto WriteFloats(string name, ReadOnlySpan<long> dims, ReadOnlySpan<float> values)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims.ToArray());
        Write(tensor, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values));
        return tensor;
    }

    /// <summary>Moves a tensor's inline <c>raw_data</c> into the external file.</summary>
    public void MoveToExternal(TensorProto tensor)
    {
        ByteString raw = tensor.RawData;
        tensor.RawData = ByteString.Empty;
        Write(tensor, raw.Span);
    }

    /// <summary>Copies an external tensor's bytes from <paramref name="sourceDirectory"/> into this file.</summary>
    public void CopyExternal(TensorProto tensor, string sourceDirectory)
    {
        var bytes = new byte[TensorData.ByteLength(tensor)];
        TensorData.ReadBytes(tensor, sourceDirectory, bytes);
        Write(tensor, bytes);
    }

    private void Write(TensorProto tensor, ReadOnlySpan<byte> bytes)
    {
        long padding = (Alignment - _stream.Position % Alignment) % Alignment;
        for (long i = 0; i < padding; i++)
        {
            _stream.WriteByte(0);
        }

        long offset = _stream.Position;
        _stream.Write(bytes);
        tensor.DataLocation = TensorProto.Types.DataLocation.External;
        tensor.ExternalData.Clear();
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "location", Value = _location });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "offset", Value = offset.ToString(System.Globalization.CultureInfo.InvariantCulture) });
        tensor.ExternalData.Add(new StringStringEntryProto { Key = "length", Value = bytes.Length.ToString(System.Globalization.CultureInfo.InvariantCulture) });
    }

    public void Dispose() => _stream.Dispose();
}
