using Serving.Trainer.Optimization;

namespace Serving.Trainer.Training;

/// <summary>Everything that decides a run besides the architecture and the data; saved in checkpoints.</summary>
public sealed record TrainingOptions
{
    public int Steps { get; init; } = 1000;
    public int SequenceLength { get; init; } = 128;
    public int BatchSize { get; init; } = 8;
    public double LearningRate { get; init; } = 3e-3;
    /// <summary>Default: 5% of the steps, at least 1.</summary>
    public int? WarmupSteps { get; init; }
    public double FinalLearningRateRatio { get; init; } = 0.1;
    public double ClipNorm { get; init; } = 1.0;
    public AdamWSettings AdamW { get; init; } = new();
    public ulong Seed { get; init; }

    public LearningRateSchedule Schedule =>
        new(LearningRate, WarmupSteps ?? Math.Max(1, Steps / 20), Steps, FinalLearningRateRatio);

    /// <summary>Throws <see cref="ArgumentException"/> naming the first bad field.</summary>
    public void Validate()
    {
        Require(Steps >= 1, "steps must be at least 1");
        Require(SequenceLength >= 2, "sequence length must be at least 2");
        Require(BatchSize >= 1, "batch size must be at least 1");
        Require(LearningRate > 0 && double.IsFinite(LearningRate), "learning rate must be a positive number");
        Require(WarmupSteps is null or >= 1, "warm-up steps must be at least 1");
        Require(ClipNorm > 0, "clip norm must be positive");
    }

    private static void Require(bool condition, string message)
    {
        if (!condition)
        {
            throw new ArgumentException(message);
        }
    }
}
