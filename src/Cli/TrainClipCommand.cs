using System.CommandLine;
using System.Globalization;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Clip;
using Serving.Trainer.ShapesWorld;
using Serving.Trainer.Training;

namespace Serving.Cli;

/// <summary>
/// <c>serving train-clip --out DIR [--config shapes|tiny] [--steps N] [--batch N] [--lr X]
/// [--seed N] [--checkpoint-every N] [--resume CHECKPOINT]</c>: trains a CLIP dual encoder on
/// the synthetic shapes world (planted shape ↔ background confounder). The folder gets the
/// model, <c>checkpoint.bin</c> and <c>training_log.csv</c>.
/// </summary>
internal static class TrainClipCommand
{
    public const string CheckpointFile = "checkpoint.bin";

    /// <summary>Held-out pairs for the periodic validation loss (its own seed, the training distribution).</summary>
    private const int ValidationPairs = 128;

    public static Command Create()
    {
        var output = new Option<DirectoryInfo>("--out") { Description = "Model folder to write (empty or new; with --resume, the run's folder)", Required = true };
        var config = new Option<string>("--config") { Description = "Architecture: " + string.Join(", ", ClipTrainingPresets.Names), DefaultValueFactory = _ => "shapes" };
        config.AcceptOnlyFromAmong([.. ClipTrainingPresets.Names]);
        var steps = new Option<int>("--steps") { Description = "Optimisation steps", DefaultValueFactory = _ => 2000 };
        var batch = new Option<int>("--batch") { Description = "Image–caption pairs per step", DefaultValueFactory = _ => 128 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (5% linear warm-up, cosine to 10%)", DefaultValueFactory = _ => 2e-3 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initial weights and the pairs", DefaultValueFactory = _ => 0 };
        var every = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints, exports and validation", DefaultValueFactory = _ => 100 };
        var resume = new Option<FileInfo?>("--resume") { Description = "Checkpoint to continue (its architecture and options win, except --steps, which re-plans the cosine schedule to a new end)" };
        var command = new Command("train-clip", "Train a CLIP dual encoder on the synthetic shapes world (CPU, OpenBLAS)")
        {
            output, config, steps, batch, lr, seed, every, resume,
        };
        Option[] fixedByCheckpoint = [config, batch, lr, seed];
        command.SetAction(result =>
        {
            FileInfo? checkpoint = result.GetValue(resume);
            if (checkpoint is not null && fixedByCheckpoint.FirstOrDefault(o => result.GetResult(o) is { Implicit: false }) is { } clash)
            {
                throw new UsageException($"--resume takes {clash.Name} from the checkpoint; drop {clash.Name}");
            }

            ClipConfig architecture = ClipTrainingPresets.Find(result.GetValue(config)!)!;
            var options = new TrainingOptions
            {
                Steps = result.GetValue(steps), BatchSize = result.GetValue(batch), LearningRate = result.GetValue(lr),
                Seed = result.GetValue(seed), SequenceLength = architecture.MaxPositionEmbeddings, AdamW = new() { WeightDecay = 0.1 },
            };
            int? newEnd = checkpoint is not null && result.GetResult(steps) is { Implicit: false } ? options.Steps : null;
            return Run(result.GetValue(output)!, architecture, options, result.GetValue(every), checkpoint, newEnd);
        });
        return command;
    }

    private static int Run(DirectoryInfo output, ClipConfig config, TrainingOptions options, int checkpointEvery, FileInfo? resume, int? newEnd)
    {
        Validate(output, options, checkpointEvery, resume);
        ClipTrainer trainer = resume is null ? ClipTrainer.Start(config, options) : ClipTrainer.Resume(Replanned(LoadCheckpoint(resume), newEnd));
        Console.Error.WriteLine($"{trainer.Parameters.Count:N0} parameters; {trainer.Options.Steps} steps of {trainer.Options.BatchSize} pairs");
        output.Create();
        string checkpointPath = Path.Combine(output.FullName, CheckpointFile);
        try
        {
            Loop(trainer, output.FullName, checkpointPath, checkpointEvery);
        }
        catch (InvalidOperationException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return CommandLine.Failed;
        }

        ZeroShotAccuracy accuracy = trainer.ZeroShot(SceneSampler.Balanced(repeats: 4, seed: 7));
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"zero-shot accuracy on 512 balanced scenes: shape {accuracy.Shape:P1}, colour {accuracy.Colour:P1}, size {accuracy.Size:P1}, background {accuracy.Background:P1}"));
        return CommandLine.Ok;
    }

    private static void Loop(ClipTrainer trainer, string folder, string checkpointPath, int checkpointEvery)
    {
        string logPath = Path.Combine(folder, "training_log.csv");
        bool append = File.Exists(logPath) && trainer.CompletedSteps > 0;
        using var log = new StreamWriter(logPath, append) { AutoFlush = true };
        if (!append)
        {
            log.WriteLine("step,loss,learning_rate,gradient_norm,pairs_per_second,validation_loss,logit_scale,shape_accuracy");
        }

        PairBatch validation = new ShapesBatcher(trainer.Batcher.Tokenizer, trainer.Batcher.Processor, trainer.Options.Seed + 1_000_003).Batch(1, ValidationPairs);
        IReadOnlyList<Scene> balanced = SceneSampler.Balanced(repeats: 1, seed: 3);
        while (!trainer.IsFinished)
        {
            ClipStepResult step = trainer.TrainStep();
            string validationLoss = "", shapeAccuracy = "";
            if (step.Step % checkpointEvery == 0 || trainer.IsFinished)
            {
                validationLoss = Format(trainer.Loss(validation));
                shapeAccuracy = Format(trainer.ZeroShot(balanced).Shape);
                trainer.SaveCheckpoint(checkpointPath);
                trainer.Export(folder);
            }

            log.WriteLine(string.Join(',', step.Step, Format(step.Loss), Format(step.LearningRate), Format(step.GradientNorm),
                Format(step.PairsPerSecond), validationLoss, Format(step.LogitScale), shapeAccuracy));
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"step {step.Step}/{trainer.Options.Steps} loss {step.Loss:F4} lr {step.LearningRate:E1} scale {MathF.Exp(step.LogitScale):F1} {step.PairsPerSecond:F0} pairs/s{(validationLoss.Length > 0 ? $" validation {validationLoss} shape accuracy {shapeAccuracy}" : "")}"));
        }
    }

    private static string Format(double value) => value.ToString("G6", CultureInfo.InvariantCulture);

    private static void Validate(DirectoryInfo output, TrainingOptions options, int checkpointEvery, FileInfo? resume)
    {
        if (resume is { Exists: false })
        {
            throw new UsageException($"checkpoint not found: {resume.FullName}");
        }

        if (resume is null && output.Exists && output.EnumerateFileSystemInfos().Any())
        {
            throw new UsageException($"'{output.FullName}' exists and is not empty (pass --resume to continue a run)");
        }

        if (checkpointEvery < 1)
        {
            throw new UsageException($"--checkpoint-every must be at least 1, got {checkpointEvery}");
        }

        if (options.BatchSize < 2)
        {
            throw new UsageException($"--batch must be at least 2 (a contrastive loss needs negatives), got {options.BatchSize}");
        }

        try
        {
            options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }
    }

    /// <summary>
    /// A resumed run with a new last step: the warm-up is kept as it was (steps / 20 of the old
    /// plan) and the cosine decay is stretched or squeezed to end at <paramref name="newEnd"/>.
    /// </summary>
    private static ClipCheckpoint.Contents Replanned(ClipCheckpoint.Contents saved, int? newEnd)
    {
        if (newEnd is not { } end)
        {
            return saved;
        }

        if (end <= saved.CompletedSteps)
        {
            throw new UsageException($"--steps {end} is not past the checkpoint's {saved.CompletedSteps} completed steps");
        }

        int warmup = saved.Options.WarmupSteps ?? Math.Max(1, saved.Options.Steps / 20);
        return saved with { Options = saved.Options with { Steps = end, WarmupSteps = warmup } };
    }

    private static ClipCheckpoint.Contents LoadCheckpoint(FileInfo checkpoint)
    {
        try
        {
            return ClipCheckpoint.Load(checkpoint.FullName);
        }
        catch (InvalidDataException e)
        {
            throw new UsageException(e.Message);
        }
    }
}
