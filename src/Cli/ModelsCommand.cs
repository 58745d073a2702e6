using System.CommandLine;
using System.Diagnostics;
using Serving.Runtime.Models.Clip;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Quantization;
using Spectre.Console;

namespace Serving.Cli;

/// <summary><c>serving models create --preset NAME --out DIR [--seed N] [--dtypes fp32,q4,q8,fp16] [--style serving|onnx-community|optimum|genai]</c>.</summary>
internal static class ModelsCommand
{
    public static Command Create()
    {
        string[] names = [.. Gemma3Presets.Names, .. ClipPresets.Names];
        var preset = new Option<string>("--preset") { Description = "Architecture: " + string.Join(", ", names), Required = true };
        preset.AcceptOnlyFromAmong(names);
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write (created if missing)", Required = true };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the random weights (same seed, same bytes)", DefaultValueFactory = _ => 0 };
        var dtypes = new Option<string>("--dtypes")
        {
            Description = "Weight variants to write beside each other, as on Hugging Face (fp32 always; q4 → onnx/model_q4.onnx, q8 → model_quantized.onnx, fp16 → model_fp16.onnx); Gemma 3 presets only",
            DefaultValueFactory = _ => "fp32",
        };
        var style = new Option<string>("--style")
        {
            Description = "Graph layout of a Gemma 3 preset: serving (ours), onnx-community (GroupQueryAttention, as transformers.js downloads), "
                + "optimum (plain operators, as Optimum exports), genai (ONNX Runtime GenAI's model builder)",
            DefaultValueFactory = _ => "serving",
        };
        style.AcceptOnlyFromAmong([.. Gemma3ExportStyles.Names]);
        var create = new Command("create", "Write a Hugging Face-style ONNX model folder with seeded random weights") { preset, output, seed, dtypes, style };
        create.SetAction(result => Run(result.GetValue(preset)!, result.GetValue(output)!, result.GetValue(seed), ParseDtypes(result.GetValue(dtypes)!),
            Gemma3ExportStyles.Find(result.GetValue(style)!)!.Value));
        return new Command("models", "Create model folders") { create, Export() };
    }

    /// <summary><c>serving models export --model DIR --style S --out DIR</c>: a trained folder of ours in another style.</summary>
    private static Command Export()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "A Gemma 3 folder of ours with fp32 weights (onnx/model.onnx)", Required = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write (created if missing; must be empty)", Required = true };
        var style = new Option<string>("--style") { Description = "onnx-community, optimum, genai or serving", Required = true };
        style.AcceptOnlyFromAmong([.. Gemma3ExportStyles.Names]);
        var export = new Command("export", "Write a trained Gemma 3 folder's weights in another export style (config and tokenizer copied)") { model, output, style };
        export.SetAction(result =>
        {
            DirectoryInfo source = result.GetValue(model)!, target = result.GetValue(output)!;
            if (!File.Exists(Path.Combine(source.FullName, Gemma3ModelWriter.OnnxFile)))
            {
                throw new UsageException($"'{source.FullName}' has no {Gemma3ModelWriter.OnnxFile}");
            }

            if (target.Exists && target.EnumerateFileSystemInfos().Any())
            {
                throw new UsageException($"'{target.FullName}' exists and is not empty");
            }

            Gemma3ModelWriter.Reexport(source.FullName, target.FullName, Gemma3ExportStyles.Find(result.GetValue(style)!)!.Value);
            Console.WriteLine($"wrote {target.FullName}");
            return CommandLine.Ok;
        });
        return export;
    }

    /// <summary>What <c>create</c> needs of a preset, whatever the architecture.</summary>
    private sealed record Preset(string Family, long ParameterCount, Action<string, ulong, IProgress<(long Done, long Total)>?> Write);

    private static Preset Find(string name, Gemma3ExportStyle style) => ClipPresets.Find(name) is { } clip
        ? style == Gemma3ExportStyle.Serving
            ? new Preset("CLIP", clip.ParameterCount, (folder, seed, progress) => ClipModelWriter.WriteRandom(folder, clip, seed, progress))
            : throw new UsageException($"--style {style.Name()}: styles are written for Gemma 3 presets only, not '{name}'")
        : Gemma3Presets.Find(name) is { } gemma
            ? new Preset("Gemma 3", gemma.ParameterCount, (folder, seed, progress) => Gemma3ModelWriter.WriteRandom(folder, gemma, seed, progress, style))
            : throw new UsageException($"unknown preset '{name}'");

    private static string[] ParseDtypes(string list)
    {
        string[] dtypes = [.. list.Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries).Distinct()];
        if (dtypes.FirstOrDefault(d => d != "fp32" && !Quantizer.Dtypes.Contains(d)) is { } unknown)
        {
            throw new UsageException($"unknown dtype '{unknown}' in --dtypes (known: fp32, {string.Join(", ", Quantizer.Dtypes)})");
        }

        return dtypes;
    }

    private static int Run(string name, DirectoryInfo output, ulong seed, string[] dtypes, Gemma3ExportStyle style)
    {
        Preset config = Find(name, style);
        string[] variants = [.. dtypes.Where(d => d != "fp32")];
        if (variants.Length > 0 && Gemma3Presets.Find(name) is null)
        {
            throw new UsageException($"--dtypes {string.Join(",", variants)}: weight variants are written for Gemma 3 presets only, not '{name}'");
        }

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

        foreach (string dtype in variants)
        {
            Console.Error.WriteLine($"Adding the {dtype} variant ({OnnxVariant.FileName(dtype)})");
            ProgressBars.Run(dtype, progress => { Quantizer.AddVariant(output.FullName, dtype, progress); return 0; });
        }

        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"parameters: {config.ParameterCount}");
        foreach (string dtype in variants)
        {
            Console.WriteLine($"variant: {OnnxVariant.FileName(dtype)}");
        }
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
