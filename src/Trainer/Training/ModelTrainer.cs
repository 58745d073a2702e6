using System.Diagnostics;
using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Model;
using Serving.Trainer.Optimization;

namespace Serving.Trainer.Training;

/// <summary>What one optimisation step did.</summary>
public readonly record struct StepResult(int Step, double Loss, double LearningRate, double GradientNorm, int Tokens, TimeSpan Elapsed)
{
    public double TokensPerSecond => Tokens / Elapsed.TotalSeconds;
}

/// <summary>
/// Trains a Gemma 3 decoder on a token stream: seeded batches, forward and backward, global
/// norm clipping, AdamW on a warm-up + cosine schedule. Checkpoints resume bit for bit (same
/// batches, same moments); <see cref="Export"/> writes a standard model folder.
/// </summary>
public sealed class ModelTrainer
{
    private readonly Gemma3TrainingModel _model;
    private readonly TokenBatcher _batcher;

    private ModelTrainer(ParameterSet parameters, TrainingOptions options, int[] tokens, int completedSteps)
    {
        options.Validate();
        if (options.SequenceLength > parameters.Config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"sequence length {options.SequenceLength} exceeds max_position_embeddings ({parameters.Config.MaxPositionEmbeddings})");
        }

        Options = options;
        CompletedSteps = completedSteps;
        _model = new Gemma3TrainingModel(parameters, options.SequenceLength);
        _batcher = new TokenBatcher(tokens, options.SequenceLength, options.BatchSize, options.Seed);
    }

    public TrainingOptions Options { get; }
    public int CompletedSteps { get; private set; }
    public ParameterSet Parameters => _model.Parameters;
    public Gemma3Config Config => Parameters.Config;
    public bool IsFinished => CompletedSteps >= Options.Steps;

    /// <summary>A fresh run: weights from <see cref="TrainingOptions.Seed"/>.</summary>
    public static ModelTrainer Start(Gemma3Config config, TrainingOptions options, int[] tokens) =>
        new(ParameterSet.Initialize(config, options.Seed), options, tokens, 0);

    /// <summary>Continues a saved run on the same tokens with its saved options.</summary>
    public static ModelTrainer Resume(string checkpointPath, int[] tokens) => Resume(Checkpoint.Load(checkpointPath), tokens);

    public static ModelTrainer Resume(Checkpoint.Contents saved, int[] tokens) =>
        new(saved.Parameters, saved.Options, tokens, saved.CompletedSteps);

    public StepResult TrainStep()
    {
        var clock = Stopwatch.StartNew();
        int step = CompletedSteps + 1;
        (int[] inputs, int[] targets) = _batcher.Batch(step);
        Parameters.ZeroGradients();
        double loss = _model.LossAndGradients(inputs, targets, Options.BatchSize);
        if (!double.IsFinite(loss))
        {
            throw new InvalidOperationException($"the loss became {loss} at step {step}; lower the learning rate");
        }

        double norm = AdamW.ClipGradients(Parameters, Options.ClipNorm);
        double rate = Options.Schedule.At(step);
        AdamW.Step(Parameters, Options.AdamW, step, rate);
        CompletedSteps = step;
        return new StepResult(step, loss, rate, norm, inputs.Length, clock.Elapsed);
    }

    /// <summary>
    /// Mean next-token loss over up to <paramref name="maxWindows"/> consecutive windows of
    /// <paramref name="tokens"/>, <see cref="TrainingOptions.BatchSize"/> windows per forward pass:
    /// the training shape, so the model's ~0.7 GB of buffers (kjv, 8 × 512) are not reallocated.
    /// </summary>
    public double Evaluate(int[] tokens, int maxWindows)
    {
        double total = 0;
        int count = 0;
        foreach ((int[] Inputs, int[] Targets)[] chunk in TokenBatcher.Windows(tokens, Options.SequenceLength).Take(maxWindows).Chunk(Options.BatchSize))
        {
            int[] inputs = [.. chunk.SelectMany(window => window.Inputs)];
            int[] targets = [.. chunk.SelectMany(window => window.Targets)];
            total += _model.Loss(inputs, targets, chunk.Length) * chunk.Length;
            count += chunk.Length;
        }

        return count == 0 ? throw new ArgumentException($"{tokens.Length} tokens fill no window of {Options.SequenceLength}") : total / count;
    }

    /// <summary>Logits [S, V] of one sequence: what the exported ONNX model must reproduce.</summary>
    public float[] Logits(int[] inputs) => _model.Logits(inputs, batch: 1);

    public void SaveCheckpoint(string path) => Checkpoint.Save(path, Parameters, Options, CompletedSteps);

    /// <summary>
    /// Writes the weights through the Gemma 3 builder: config, ONNX graph and data, and the
    /// synthetic tokenizer unless <paramref name="writeTokenizer"/> is false (the folder already
    /// holds the tokenizer the corpus was encoded with).
    /// </summary>
    public void Export(string folder, bool writeTokenizer = true) =>
        Gemma3ModelWriter.Write(folder, Config, spec => Parameters[spec.Name].Value, writeTokenizer: writeTokenizer);
}
