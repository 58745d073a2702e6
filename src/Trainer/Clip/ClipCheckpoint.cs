using System.Text.Json;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Training;

namespace Serving.Trainer.Clip;

/// <summary>
/// A resumable CLIP snapshot in the decoder checkpoint's layout (<see cref="CheckpointFile"/>):
/// the architecture, the options, the completed steps and every parameter's values and AdamW moments.
/// </summary>
public static class ClipCheckpoint
{
    private const string Magic = "serving-clip-checkpoint-1";

    public sealed record Contents(ClipParameters Parameters, TrainingOptions Options, int CompletedSteps);

    public static void Save(string path, ClipParameters parameters, TrainingOptions options, int completedSteps) =>
        CheckpointFile.Write(path, Magic, JsonSerializer.Serialize(parameters.Config), options, completedSteps, parameters.All);

    /// <exception cref="InvalidDataException">The file is not a CLIP checkpoint, is truncated, or lacks a parameter.</exception>
    public static Contents Load(string path)
    {
        CheckpointFile.Saved saved = CheckpointFile.Read(path, Magic, "a CLIP trainer checkpoint");
        ClipConfig config = JsonSerializer.Deserialize<ClipConfig>(saved.ConfigJson)!;
        var parameters = ClipParameters.FromValues(config, spec => saved.Value(spec.Name, spec.ElementCount), saved.Value(ClipParameters.LogitScaleName, 1)[0]);
        saved.RestoreMoments(parameters.All);
        return new Contents(parameters, saved.Options, saved.CompletedSteps);
    }
}
