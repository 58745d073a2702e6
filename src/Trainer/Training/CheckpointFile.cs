using System.Runtime.InteropServices;
using System.Text.Json;
using Serving.Trainer.Model;

namespace Serving.Trainer.Training;

/// <summary>
/// The layout both trainers' checkpoints share: a magic string, the architecture as JSON, the
/// training options, the completed steps, then per parameter its name, length, values and
/// AdamW moments (3 × 4 bytes per weight). Written to a temporary file and renamed, so a crash
/// mid-write keeps the previous one.
/// </summary>
internal static class CheckpointFile
{
    /// <summary>A checkpoint as read: the architecture JSON for the caller to parse, and every parameter by name.</summary>
    public sealed record Saved(string ConfigJson, TrainingOptions Options, int CompletedSteps,
        Dictionary<string, (float[] Value, float[] First, float[] Second)> Parameters, string Path)
    {
        /// <summary>The values of <paramref name="name"/>; <see cref="InvalidDataException"/> when missing or of another size.</summary>
        public float[] Value(string name, long count) => Parameters.TryGetValue(name, out var entry) && entry.Value.LongLength == count
            ? entry.Value
            : throw new InvalidDataException($"{Path}: '{name}' ({count} values) is missing or has another size");

        /// <summary>Copies the saved AdamW moments into <paramref name="parameters"/>.</summary>
        public void RestoreMoments(IEnumerable<Parameter> parameters)
        {
            foreach (Parameter p in parameters)
            {
                Parameters[p.Name].First.CopyTo(p.FirstMoment, 0);
                Parameters[p.Name].Second.CopyTo(p.SecondMoment, 0);
            }
        }
    }

    public static void Write(string path, string magic, string configJson, TrainingOptions options, int completedSteps, IEnumerable<Parameter> parameters)
    {
        string temporary = path + ".tmp";
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(System.IO.Path.GetFullPath(path))!);
        using (var writer = new BinaryWriter(File.Create(temporary)))
        {
            writer.Write(magic);
            writer.Write(configJson);
            writer.Write(JsonSerializer.Serialize(options));
            writer.Write(completedSteps);
            foreach (Parameter p in parameters)
            {
                writer.Write(p.Name);
                writer.Write(p.Value.Length);
                foreach (float[] array in new[] { p.Value, p.FirstMoment, p.SecondMoment })
                {
                    writer.Write(MemoryMarshal.AsBytes(array.AsSpan()));
                }
            }
        }

        File.Move(temporary, path, overwrite: true);
    }

    /// <exception cref="InvalidDataException">The file does not start with <paramref name="magic"/> (it is not <paramref name="what"/>) or is truncated.</exception>
    public static Saved Read(string path, string magic, string what)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        try
        {
            if (reader.ReadString() != magic)
            {
                throw new InvalidDataException($"{path} is not {what}");
            }

            string config = reader.ReadString();
            TrainingOptions options = JsonSerializer.Deserialize<TrainingOptions>(reader.ReadString())!;
            int completed = reader.ReadInt32();
            var parameters = new Dictionary<string, (float[] Value, float[] First, float[] Second)>();
            while (reader.BaseStream.Position < reader.BaseStream.Length)
            {
                string name = reader.ReadString();
                int length = reader.ReadInt32();
                parameters[name] = (ReadFloats(reader, length), ReadFloats(reader, length), ReadFloats(reader, length));
            }

            return new Saved(config, options, completed, parameters, path);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException($"{path} is truncated", e);
        }
    }

    private static float[] ReadFloats(BinaryReader reader, int length)
    {
        var values = new float[length];
        reader.BaseStream.ReadExactly(MemoryMarshal.AsBytes(values.AsSpan()));
        return values;
    }
}
