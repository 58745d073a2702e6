using System.Globalization;
using Serving.Trainer.Training;
using Spectre.Console;

namespace Serving.Cli;

/// <summary>
/// Steps a <see cref="ModelTrainer"/> to the end with a progress bar on stderr (loss, learning
/// rate, tokens/s), a CSV line per step, and a checkpoint plus a validation loss every
/// <c>checkpointEvery</c> steps and at the end.
/// </summary>
internal sealed class TrainingLoop(ModelTrainer trainer, int[] validation, string checkpointPath, string logPath, int checkpointEvery)
{
    /// <summary>Validation windows per periodic check: 16 × 128 tokens keeps it under ~2% of the run.</summary>
    private const int PeriodicWindows = 16;
    /// <summary>The final figure reads up to 256 windows (the whole 5% split at the KJV's size).</summary>
    private const int FinalWindows = 256;

    public double Run()
    {
        bool append = File.Exists(logPath) && trainer.CompletedSteps > 0;
        using var log = new StreamWriter(logPath, append);
        if (!append)
        {
            log.WriteLine("step,loss,learning_rate,gradient_norm,tokens_per_second,validation_loss");
        }

        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask("starting", maxValue: trainer.Options.Steps);
                task.Value = trainer.CompletedSteps;
                while (!trainer.IsFinished)
                {
                    StepResult step = trainer.TrainStep();
                    string validationLoss = "";
                    if (step.Step % checkpointEvery == 0 && !trainer.IsFinished)
                    {
                        double loss = trainer.Evaluate(validation, PeriodicWindows);
                        trainer.SaveCheckpoint(checkpointPath);
                        validationLoss = Format(loss);
                        console.MarkupLine($"step {step.Step}: validation loss {validationLoss} (checkpoint saved)");
                    }

                    log.WriteLine(string.Join(',', step.Step, Format(step.Loss), Format(step.LearningRate), Format(step.GradientNorm), Format(step.TokensPerSecond), validationLoss));
                    task.Description = $"step {step.Step}/{trainer.Options.Steps}  loss {step.Loss:F3}  lr {step.LearningRate:E1}  {step.TokensPerSecond:F0} tokens/s";
                    task.Value = step.Step;
                }
            });

        trainer.SaveCheckpoint(checkpointPath);
        double final = trainer.Evaluate(validation, FinalWindows);
        log.WriteLine(string.Join(',', trainer.CompletedSteps, "", "", "", "", Format(final)));
        return final;
    }

    private static string Format(double value) => value.ToString("G6", CultureInfo.InvariantCulture);
}
