using System.Text;

namespace Serving.Runtime.Tests.Gguf;

/// <summary>
/// Reads back a GGUF v3 file (metadata, tensor infos, f32 data) independently of the writer,
/// so the tests check the bytes llama.cpp will see.
/// </summary>
public sealed class GgufFile
{
    public const int Alignment = 32;

    public required uint Version { get; init; }
    public required Dictionary<string, object> Metadata { get; init; }
    public required List<(string Name, long[] Dims, uint Type, long Offset)> Tensors { get; init; }
    public required long DataStart { get; init; }
    public required string Path { get; init; }

    public static GgufFile Read(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path), Encoding.UTF8);
        if (Encoding.ASCII.GetString(reader.ReadBytes(4)) != "GGUF")
        {
            throw new InvalidDataException("no GGUF magic");
        }

        uint version = reader.ReadUInt32();
        long tensorCount = (long)reader.ReadUInt64(), keyCount = (long)reader.ReadUInt64();
        var metadata = new Dictionary<string, object>();
        for (long i = 0; i < keyCount; i++)
        {
            string key = ReadString(reader);
            metadata[key] = ReadValue(reader, reader.ReadUInt32());
        }

        var tensors = new List<(string, long[], uint, long)>();
        for (long i = 0; i < tensorCount; i++)
        {
            string name = ReadString(reader);
            var dims = new long[reader.ReadUInt32()];
            for (int d = 0; d < dims.Length; d++)
            {
                dims[d] = (long)reader.ReadUInt64();
            }

            tensors.Add((name, dims, reader.ReadUInt32(), (long)reader.ReadUInt64()));
        }

        long position = reader.BaseStream.Position;
        return new GgufFile
        {
            Version = version, Metadata = metadata, Tensors = tensors, Path = path,
            DataStart = (position + Alignment - 1) / Alignment * Alignment,
        };
    }

    public float[] ReadTensor(string name)
    {
        var (_, dims, type, offset) = Tensors.Single(t => t.Name == name);
        if (type != 0)
        {
            throw new InvalidDataException($"{name} is ggml type {type}, not f32");
        }

        var values = new float[dims.Aggregate(1L, (a, b) => a * b)];
        using var stream = File.OpenRead(Path);
        stream.Position = DataStart + offset;
        stream.ReadExactly(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }

    private static string ReadString(BinaryReader reader) => Encoding.UTF8.GetString(reader.ReadBytes((int)reader.ReadUInt64()));

    private static object ReadValue(BinaryReader reader, uint type) => type switch
    {
        4 => reader.ReadUInt32(),
        5 => reader.ReadInt32(),
        6 => reader.ReadSingle(),
        7 => reader.ReadBoolean(),
        8 => ReadString(reader),
        9 => ReadArray(reader),
        _ => throw new InvalidDataException($"value type {type} is not one the writer uses"),
    };

    private static object[] ReadArray(BinaryReader reader)
    {
        uint type = reader.ReadUInt32();
        var values = new object[(long)reader.ReadUInt64()];
        for (long i = 0; i < values.LongLength; i++)
        {
            values[i] = ReadValue(reader, type);
        }

        return values;
    }
}
