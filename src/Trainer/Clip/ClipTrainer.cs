using System.Diagnostics;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Optimization;
using Serving.Trainer.Training;

namespace Serving.Trainer.Clip;

/// <summary>What one CLIP optimisation step did.</summary>
public readonly record struct ClipStepResult(int Step, double Loss, double LearningRate, double GradientNorm, float LogitScale, int Pairs, TimeSpan Elapsed)
{
    public double PairsPerSecond => Pairs / Elapsed.TotalSeconds;
}

/// <summary>
/// Trains a CLIP dual encoder on the shapes world: seeded batches, forward and backward,
/// global norm clipping, AdamW on the warm-up + cosine schedule, the log temperature
/// clamped to log 100. Checkpoints resume with the same batches and moments;
/// <see cref="Export"/> writes a standard CLIP folder through the runtime's builder.
/// </summary>
public sealed class ClipTrainer
{
    private readonly ClipTrainingModel _model;

    private ClipTrainer(ClipParameters parameters, TrainingOptions options, int completedSteps)
    {
        options.Validate();
        Options = options;
        CompletedSteps = completedSteps;
        _model = new ClipTrainingModel(parameters);
        Batcher = ShapesBatcher.Create(parameters.Config, options.Seed);
    }

    public TrainingOptions Options { get; }
    public int CompletedSteps { get; private set; }
    public ClipParameters Parameters => _model.Parameters;
    public ClipConfig Config => Parameters.Config;
    public ClipTrainingModel Model => _model;
    public ShapesBatcher Batcher { get; }
    public bool IsFinished => CompletedSteps >= Options.Steps;

    public static ClipTrainer Start(ClipConfig config, TrainingOptions options) =>
        new(ClipParameters.Initialize(config, options.Seed), options, 0);

    public static ClipTrainer Resume(ClipCheckpoint.Contents saved) => new(saved.Parameters, saved.Options, saved.CompletedSteps);

    public ClipStepResult TrainStep()
    {
        var clock = Stopwatch.StartNew();
        int step = CompletedSteps + 1;
        PairBatch batch = Batcher.Batch(step, Options.BatchSize);
        Parameters.ZeroGradients();
        double loss = _model.LossAndGradients(batch.Pixels, batch.Ids, batch.Batch, batch.Length);
        if (!double.IsFinite(loss))
        {
            throw new InvalidOperationException($"the loss became {loss} at step {step}; lower the learning rate");
        }

        double norm = AdamW.ClipGradients(Parameters.All, Options.ClipNorm);
        double rate = Options.Schedule.At(step);
        AdamW.Step(Parameters.All, Options.AdamW, step, rate);
        float[] scale = Parameters.LogitScale.Value;
        scale[0] = Math.Clamp(scale[0], 0f, ClipParameters.MaxLogitScale);
        CompletedSteps = step;
        return new ClipStepResult(step, loss, rate, norm, scale[0], batch.Batch, clock.Elapsed);
    }

    /// <summary>The contrastive loss of a batch without touching gradients.</summary>
    public double Loss(PairBatch batch) => _model.Loss(batch.Pixels, batch.Ids, batch.Batch, batch.Length);

    /// <summary>Unit-length caption embeddings from the model being trained.</summary>
    public float[][] EmbedTexts(IReadOnlyList<string> texts)
    {
        (int[] ids, int length) = Batcher.Ids(texts);
        return Rows(_model.EncodeTexts(ids, texts.Count, length), texts.Count);
    }

    /// <summary>Unit-length image embeddings of rendered scenes from the model being trained.</summary>
    public float[][] EmbedImages(IReadOnlyList<ShapesWorld.Scene> scenes) =>
        Rows(_model.EncodeImages(Batcher.Pixels(scenes), scenes.Count), scenes.Count);

    /// <summary>Zero-shot accuracy of each attribute on <paramref name="scenes"/>.</summary>
    public ShapesWorld.ZeroShotAccuracy ZeroShot(IReadOnlyList<ShapesWorld.Scene> scenes) =>
        ShapesWorld.ZeroShot.Evaluate(scenes, EmbedImages(scenes), EmbedTexts);

    private float[][] Rows(float[] flat, int count) =>
        [.. Enumerable.Range(0, count).Select(r => ShapesWorld.ZeroShot.Normalised(flat.AsSpan(r * Config.ProjectionDim, Config.ProjectionDim).ToArray()))];

    public void SaveCheckpoint(string path) => ClipCheckpoint.Save(path, Parameters, Options, CompletedSteps);

    /// <summary>The transformers.js split layout with the trained weights, tokenizer and a <c>preprocessor_config.json</c> at the training size.</summary>
    public void Export(string folder) => ClipModelWriter.Write(folder, Config, spec => Parameters[spec.Name].Value);
}
