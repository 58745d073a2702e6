using System.Runtime.InteropServices;
using System.Text.Json;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Model;
using Serving.Trainer.Training;

namespace Serving.Trainer.Clip;

/// <summary>
/// A resumable CLIP snapshot, laid out like the decoder's <see cref="Checkpoint"/>: the
/// architecture, the options, the completed steps and every parameter's values and AdamW
/// moments. Written to a temporary file and renamed.
/// </summary>
public static class ClipCheckpoint
{
    private const string Magic = "serving-clip-checkpoint-1";

    public sealed record Contents(ClipParameters Parameters, TrainingOptions Options, int CompletedSteps);

    public static void Save(string path, ClipParameters parameters, TrainingOptions options, int completedSteps)
    {
        string temporary = path + ".tmp";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using (var writer = new BinaryWriter(File.Create(temporary)))
        {
            writer.Write(Magic);
            writer.Write(JsonSerializer.Serialize(parameters.Config));
            writer.Write(JsonSerializer.Serialize(options));
            writer.Write(completedSteps);
            foreach (Parameter p in parameters.All)
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

    /// <exception cref="InvalidDataException">The file is not a CLIP checkpoint or is truncated.</exception>
    public static Contents Load(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        try
        {
            if (reader.ReadString() != Magic)
            {
                throw new InvalidDataException($"{path} is not a CLIP trainer checkpoint");
            }

            ClipConfig config = JsonSerializer.Deserialize<ClipConfig>(reader.ReadString())!;
            TrainingOptions options = JsonSerializer.Deserialize<TrainingOptions>(reader.ReadString())!;
            int completed = reader.ReadInt32();
            var saved = new Dictionary<string, (float[] Value, float[] First, float[] Second)>();
            while (reader.BaseStream.Position < reader.BaseStream.Length)
            {
                string name = reader.ReadString();
                int length = reader.ReadInt32();
                saved[name] = (ReadFloats(reader, length), ReadFloats(reader, length), ReadFloats(reader, length));
            }

            float[] Saved(string name, long count) => saved.TryGetValue(name, out var entry) && entry.Value.LongLength == count
                ? entry.Value
                : throw new InvalidDataException($"{path}: '{name}' ({count} values) is missing or has another size");
            var parameters = ClipParameters.FromValues(config, spec => Saved(spec.Name, spec.ElementCount), Saved(ClipParameters.LogitScaleName, 1)[0]);
            foreach (Parameter p in parameters.All)
            {
                saved[p.Name].First.CopyTo(p.FirstMoment, 0);
                saved[p.Name].Second.CopyTo(p.SecondMoment, 0);
            }

            return new Contents(parameters, options, completed);
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
