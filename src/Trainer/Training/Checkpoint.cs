using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Model;

namespace Serving.Trainer.Training;

/// <summary>
/// A resumable decoder snapshot (<see cref="CheckpointFile"/>'s layout) with config.json as the
/// architecture: ~70 MB at 6 M weights.
/// </summary>
public static class Checkpoint
{
    private const string Magic = "serving-trainer-checkpoint-1";

    public sealed record Contents(ParameterSet Parameters, TrainingOptions Options, int CompletedSteps);

    public static void Save(string path, ParameterSet parameters, TrainingOptions options, int completedSteps) =>
        CheckpointFile.Write(path, Magic, parameters.Config.ToJson().ToJsonString(), options, completedSteps, parameters.All);

    /// <exception cref="InvalidDataException">The file is not a checkpoint, is truncated, or lacks a parameter.</exception>
    public static Contents Load(string path)
    {
        CheckpointFile.Saved saved = CheckpointFile.Read(path, Magic, "a trainer checkpoint");
        Gemma3Config config = Gemma3Config.FromJson(JsonNode.Parse(saved.ConfigJson)!.AsObject());
        ParameterSet parameters = ParameterSet.FromValues(config, spec => saved.Value(spec.Name, spec.ElementCount));
        saved.RestoreMoments(parameters.All);
        return new Contents(parameters, saved.Options, saved.CompletedSteps);
    }
}
