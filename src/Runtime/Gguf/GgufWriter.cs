using System.Text;

namespace Serving.Runtime.Gguf;

/// <summary>GGUF metadata value types (ggml docs/gguf.md, version 3).</summary>
public enum GgufValueType : uint
{
    UInt8 = 0, Int8 = 1, UInt16 = 2, Int16 = 3, UInt32 = 4, Int32 = 5, Float32 = 6, Bool = 7,
    String = 8, Array = 9, UInt64 = 10, Int64 = 11, Float64 = 12,
}

/// <summary>One tensor to write: its GGUF name, ggml dimensions (innermost first) and a source of its f32 values.</summary>
/// <remarks>ggml's <c>ne[0]</c> is the contiguous axis: a row-major <c>[rows, cols]</c> array is <c>[cols, rows]</c> here.</remarks>
public sealed record GgufTensor(string Name, long[] Dims, Func<float[]> Values)
{
    public long ElementCount => Dims.Aggregate(1L, (a, b) => a * b);

    /// <summary>Bytes at f32, the only type this writer emits (llama.cpp's quantizer makes the rest).</summary>
    public long ByteLength => ElementCount * sizeof(float);
}

/// <summary>
/// Writes a GGUF v3 file: header, metadata, tensor infos, then the tensor data, each tensor
/// aligned to <see cref="Alignment"/>. Tensors are produced one at a time (peak memory is the
/// largest tensor: the 262k × 640 embedding of gemma3-270m, 671 MB).
/// </summary>
public sealed class GgufWriter
{
    public const uint Version = 3;
    public const int Alignment = 32;
    private const uint GgmlTypeF32 = 0;

    private readonly List<(string Key, GgufValueType Type, Action<BinaryWriter> Write)> _metadata = [];
    private readonly List<GgufTensor> _tensors = [];

    public void Add(string key, string value) => _metadata.Add((key, GgufValueType.String, w => WriteString(w, value)));
    public void Add(string key, uint value) => _metadata.Add((key, GgufValueType.UInt32, w => w.Write(value)));
    public void Add(string key, float value) => _metadata.Add((key, GgufValueType.Float32, w => w.Write(value)));
    public void Add(string key, bool value) => _metadata.Add((key, GgufValueType.Bool, w => w.Write(value)));

    public void Add(string key, IReadOnlyList<string> values) => AddArray(key, GgufValueType.String, values.Count,
        w => { foreach (string v in values) { WriteString(w, v); } });

    public void Add(string key, IReadOnlyList<float> values) => AddArray(key, GgufValueType.Float32, values.Count,
        w => { foreach (float v in values) { w.Write(v); } });

    public void Add(string key, IReadOnlyList<int> values) => AddArray(key, GgufValueType.Int32, values.Count,
        w => { foreach (int v in values) { w.Write(v); } });

    public void AddTensor(GgufTensor tensor) => _tensors.Add(tensor);

    public void Write(string path)
    {
        string temporary = path + ".tmp";
        using (var stream = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 20))
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            WriteHeader(writer);
            Pad(writer);
            long dataStart = stream.Position;
            foreach (GgufTensor tensor in _tensors)
            {
                WriteTensorData(writer, tensor);
                Pad(writer, dataStart);
            }
        }

        File.Move(temporary, path, overwrite: true);
    }

    private void AddArray(string key, GgufValueType elementType, int count, Action<BinaryWriter> writeElements) =>
        _metadata.Add((key, GgufValueType.Array, w =>
        {
            w.Write((uint)elementType);
            w.Write((ulong)count);
            writeElements(w);
        }));

    private void WriteHeader(BinaryWriter w)
    {
        w.Write("GGUF"u8);
        w.Write(Version);
        w.Write((ulong)_tensors.Count);
        w.Write((ulong)_metadata.Count);
        foreach (var (key, type, write) in _metadata)
        {
            WriteString(w, key);
            w.Write((uint)type);
            write(w);
        }

        long offset = 0;
        foreach (GgufTensor tensor in _tensors)
        {
            WriteString(w, tensor.Name);
            w.Write((uint)tensor.Dims.Length);
            foreach (long dim in tensor.Dims)
            {
                w.Write((ulong)dim);
            }

            w.Write(GgmlTypeF32);
            w.Write((ulong)offset);
            offset = AlignUp(offset + tensor.ByteLength);
        }
    }

    private static void WriteTensorData(BinaryWriter w, GgufTensor tensor)
    {
        float[] values = tensor.Values();
        if (values.LongLength != tensor.ElementCount)
        {
            throw new InvalidDataException($"tensor '{tensor.Name}' has {values.LongLength} values, its dimensions say {tensor.ElementCount}");
        }

        if (!BitConverter.IsLittleEndian)
        {
            throw new PlatformNotSupportedException("GGUF is little-endian; this writer copies memory as it is");
        }

        w.Write(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
    }

    private static void WriteString(BinaryWriter w, string value)
    {
        byte[] bytes = Encoding.UTF8.GetBytes(value);
        w.Write((ulong)bytes.Length);
        w.Write(bytes);
    }

    private static long AlignUp(long offset) => (offset + Alignment - 1) / Alignment * Alignment;

    private static void Pad(BinaryWriter w, long origin = 0)
    {
        long position = w.BaseStream.Position - origin;
        Span<byte> zeros = stackalloc byte[Alignment];
        w.Write(zeros[..(int)(AlignUp(position) - position)]);
    }
}
