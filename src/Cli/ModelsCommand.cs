using System.CommandLine;
using System.Diagnostics;
using Serving.Runtime.Models.Clip;
using Serving.Runtime.Models.Gemma3;
using Spectre.Console;

namespace Serving.Cli;

/// <summary><c>serving models create --preset NAME --out DIR [--seed N]</c>.</summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        string[] names = [.. Gemma3Presets.Names, .. ClipPresets.Names];
        var preset = new Option<string>("--preset") { Description = "Architecture: " + string.Join(", ", names), Required = true };
        preset.AcceptOnlyFromAmong(names);
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write (created if missing)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights (same seed, same bytes)", DefaultValueFactory = _ => 0 };
        var create = new Command("create", "Write a Hugging Face-style ONNX model folder with seeded random weights") { preset, output, seed };
        create.SetAction(result => Run(Find(result.GetValue(preset)!), result.GetValue(output)!, result.GetValue(seed)));
        return new Command("models", "Create model folders") { create };
    }

    /// <summary>What <c>create</c> needs of a preset, whatever the architecture.</summary>
    private sealed record Preset(string Family, long ParameterCount, Action<string, ulong, IProgress<(long Done, long Total)>?> Write);

    private static Preset Find(string name) => ClipPresets.Find(name) is { } clip
        ? new Preset("CLIP", clip.ParameterCount, (folder, seed, progress) => ClipModelWriter.WriteRandom(folder, clip, seed, progress))
        : Gemma3Presets.Find(name) is { } gemma
            ? new Preset("Gemma 3", gemma.ParameterCount, (folder, seed, progress) => Gemma3ModelWriter.WriteRandom(folder, gemma, seed, progress))
            : throw new UsageException($"unknown preset '{name}'");

    private static int Run(Preset config, DirectoryInfo output, ulong seed)
    {
        if (File.Exists(output.FullName))
        {
            throw new UsageException($"'{output.FullName}' is a file, not a folder");
        }

        if (output.Exists && output.EnumerateFileSystemInfos().Any())
        {
            throw new UsageException($"'{output.FullName}' exists and is not empty");
        }

        Console.Error.WriteLine($"Creating a {config.ParameterCount:N0}-parameter {config.Family} model in {output.FullName}");
        var clock = Stopwatch.StartNew();
        if (config.ParameterCount < 10_000_000)
        {
            config.Write(output.FullName, seed, null);
        }
        else
        {
            WriteWithProgress(output.FullName, config, seed);
        }

        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"parameters: {config.ParameterCount}");
        return CommandLine.Ok;
    }

    private static void WriteWithProgress(string folder, Preset config, ulong seed)
    {
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new TransferSpeedColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask("weights", maxValue: config.ParameterCount * sizeof(float));
                config.Write(folder, seed, new SynchronousProgress(p => task.Value = p.Done));
                task.Value = task.MaxValue;
            });
    }
}
