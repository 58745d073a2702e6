using System.CommandLine;
using System.Diagnostics;
using Serving.Runtime.Gguf;

namespace Serving.Cli;

/// <summary>
/// <c>serving export-gguf --model DIR --out FILE.gguf [--layout as-is|padded]</c>: one of our fp32
/// Gemma 3 folders as a llama.cpp <c>gemma3</c> GGUF (f32), the same weights for llama.cpp and
/// tools built on it (llama-quantize makes the q8_0/q4_0 files; benchmarks/llama-peer drives it).
/// </summary>
internal static class ExportGgufCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Gemma 3 folder with fp32 onnx/model.onnx and tokenizer.json", Required = true };
        var output = new Option<FileInfo>("--out") { Description = "GGUF file to write", Required = true };
        var layout = new Option<string>("--layout")
        {
            Description = "as-is: our layers one to one; padded: zero (identity) layers put each layer where llama.cpp's fixed "
                + "gemma3 layout (every 6th global) has its kind, for correctness checks of 1:1 or 2:1 models",
            DefaultValueFactory = _ => "as-is",
        };
        layout.AcceptOnlyFromAmong("as-is", "padded");
        var command = new Command("export-gguf", "Write a model folder as a llama.cpp gemma3 GGUF (f32)") { model, output, layout };
        command.SetAction(result => Run(result.GetValue(model)!.FullName, result.GetValue(output)!.FullName, result.GetValue(layout) == "padded"));
        return command;
    }

    private static int Run(string folder, string output, bool padLayout)
    {
        IReadOnlyList<string> mismatches;
        try
        {
            mismatches = Gemma3GgufExport.LayoutMismatches(Gemma3GgufExport.ReadConfig(folder));
        }
        catch (Exception e) when (e is IOException or ArgumentException or InvalidDataException)
        {
            throw new UsageException($"{folder}: {e.Message}");
        }

        foreach (string problem in mismatches)
        {
            Console.Error.WriteLine(padLayout
                ? $"note: identity layers added because {problem}"
                : $"warning: llama.cpp's gemma3 layout differs, so llama.cpp computes another function (--layout padded fixes it): {problem}");
        }

        var clock = Stopwatch.StartNew();
        try
        {
            Gemma3GgufExport.Write(folder, output, padLayout);
        }
        catch (InvalidDataException e)
        {
            throw new UsageException(e.Message);
        }

        Console.Error.WriteLine($"Wrote {output} ({new FileInfo(output).Length:N0} bytes) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }
}
