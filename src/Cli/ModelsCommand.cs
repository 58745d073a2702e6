using System.CommandLine;
using System.Diagnostics;
using Serving.Runtime.Models.Gemma3;
using Spectre.Console;

namespace Serving.Cli;

/// <summary><c>serving models create --preset NAME --out DIR [--seed N]</c>.</summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        var preset = new Option<string>("--preset") { Description = "Architecture: " + string.Join(", ", Gemma3Presets.Names), Required = true };
        preset.AcceptOnlyFromAmong([.. Gemma3Presets.Names]);
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write (created if missing)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights (same seed, same bytes)", DefaultValueFactory = _ => 0 };
        var create = new Command("create", "Write a Hugging Face-style ONNX model folder with seeded random weights") { preset, output, seed };
        create.SetAction(result => Run(Gemma3Presets.Find(result.GetValue(preset)!)!, result.GetValue(output)!, result.GetValue(seed)));
        return new Command("models", "Create model folders") { create };
    }

    private static int Run(Gemma3Config config, DirectoryInfo output, ulong seed)
    {
        if (File.Exists(output.FullName))
        {
            throw new UsageException($"'{output.FullName}' is a file, not a folder");
        }

        if (output.Exists && output.EnumerateFileSystemInfos().Any())
        {
            throw new UsageException($"'{output.FullName}' exists and is not empty");
        }

        Console.Error.WriteLine($"Creating a {config.ParameterCount:N0}-parameter Gemma 3 model in {output.FullName}");
        var clock = Stopwatch.StartNew();
        if (config.ParameterCount < 10_000_000)
        {
            Gemma3ModelWriter.WriteRandom(output.FullName, config, seed);
        }
        else
        {
            WriteWithProgress(output.FullName, config, seed);
        }

        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"parameters: {config.ParameterCount}");
        return CommandLine.Ok;
    }

    private static void WriteWithProgress(string folder, Gemma3Config config, ulong seed)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask("weights", maxValue: config.ParameterCount * sizeof(float));
                Gemma3ModelWriter.WriteRandom(folder, config, seed, new SynchronousProgress(p => task.Value = p.Done));
                task.Value = task.MaxValue;
            });
    }
}
