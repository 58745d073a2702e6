using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Model;

namespace Serving.Trainer.Training;

/// <summary>
/// A resumable snapshot: config.json, the training options, the number of completed steps,
/// and every parameter's values and AdamW moments (3 × 4 bytes per weight: ~70 MB at 6 M).
/// Written to a temporary file and renamed, so a crash mid-write keeps the previous one.
/// </summary>
public static class Checkpoint
{
    private const string Magic = "serving-trainer-checkpoint-1";

    public sealed record Contents(ParameterSet Parameters, TrainingOptions Options, int CompletedSteps);

    public static void Save(string path, ParameterSet parameters, TrainingOptions options, int completedSteps)
    {
        string temporary = path + ".tmp";
        Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(path))!);
        using (var writer = new BinaryWriter(File.Create(temporary)))
        {
            writer.Write(Magic);
            writer.Write(parameters.Config.ToJson().ToJsonString());
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

    /// <exception cref="InvalidDataException">The file is not a checkpoint or is truncated.</exception>
    public static Contents Load(string path)
    {
        using var reader = new BinaryReader(File.OpenRead(path));
        try
        {
            if (reader.ReadString() != Magic)
            {
                throw new InvalidDataException($"{path} is not a trainer checkpoint");
            }

            Gemma3Config config = Gemma3Config.FromJson(JsonNode.Parse(reader.ReadString())!.AsObject());
            TrainingOptions options = JsonSerializer.Deserialize<TrainingOptions>(reader.ReadString())!;
            int completed = reader.ReadInt32();
            var moments = new List<(float[] First, float[] Second)>();
            ParameterSet parameters = ParameterSet.FromValues(config, spec =>
            {
                string name = reader.ReadString();
                int length = reader.ReadInt32();
                if (name != spec.Name || length != spec.ElementCount)
                {
                    throw new InvalidDataException($"{path}: expected '{spec.Name}' ({spec.ElementCount} values), found '{name}' ({length})");
                }

                float[] value = ReadFloats(reader, length);
                moments.Add((ReadFloats(reader, length), ReadFloats(reader, length)));
                return value;
            });
            for (int i = 0; i < moments.Count; i++)
            {
                moments[i].First.CopyTo(parameters.All[i].FirstMoment, 0);
                moments[i].Second.CopyTo(parameters.All[i].SecondMoment, 0);
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
        Span<byte> bytes = MemoryMarshal.AsBytes(values.AsSpan());
        reader.BaseStream.ReadExactly(bytes);
        return values;
    }
}
