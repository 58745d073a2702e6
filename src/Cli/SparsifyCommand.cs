using System.CommandLine;
using System.Diagnostics;
using System.Text.RegularExpressions;
using Serving.Runtime.Sparsity;

namespace Serving.Cli;

/// <summary><c>serving sparsify --model DIR --out DIR --method magnitude|wanda [--calibration FILE] [--exclude PATTERN]</c>.</summary>
internal static class SparsifyCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder to prune (Hugging Face ONNX layout)", Required = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write (must be new or empty)", Required = true };
        var method = new Option<string>("--method") { Description = "magnitude: keep the 2 largest |W| of 4; wanda: |W|·‖X‖ from calibration text", DefaultValueFactory = _ => "magnitude" };
        method.AcceptOnlyFromAmong("magnitude", "wanda");
        var calibration = new Option<FileInfo?>("--calibration") { Description = "Text file for Wanda's activation norms" };
        var exclude = new Option<string?>("--exclude") { Description = "Regex: projections whose node or weight name matches stay dense" };
        var command = new Command("sparsify", "Prune attention and MLP projections to 2:4 and store them compressed for the SparseMatMul24 kernels")
        {
            model, output, method, calibration, exclude,
        };
        command.SetAction(result => Run(new SparsifyOptions(result.GetValue(model)!.FullName, result.GetValue(output)!.FullName,
            result.GetValue(method) == "wanda" ? PruningMethod.Wanda : PruningMethod.Magnitude)
        {
            CalibrationText = result.GetValue(calibration)?.FullName,
            Exclude = ParseExclude(result.GetValue(exclude)),
        }));
        return command;
    }

    private static Regex? ParseExclude(string? pattern)
    {
        if (pattern is null)
        {
            return null;
        }

        try
        {
            return new Regex(pattern, RegexOptions.CultureInvariant);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--exclude '{pattern}' is not a valid regular expression: {e.Message}");
        }
    }

    private static int Run(SparsifyOptions options)
    {
        Validate(options);
        Console.Error.WriteLine($"Pruning {options.ModelFolder} to 2:4 ({options.Method.ToString().ToLowerInvariant()}) into {options.OutputFolder}");
        var clock = Stopwatch.StartNew();
        SparsifyReport report;
        try
        {
            report = ProgressBars.Run("tensors", progress => Sparsifier.Run(options, progress));
        }
        catch (InvalidDataException e)
        {
            // The folder parsed as a path but holds no model this tool can prune.
            throw new UsageException(e.Message);
        }

        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"layers: {report.Layers}");
        Console.WriteLine($"layer bytes: {report.LayerBytesBefore} -> {report.LayerBytesAfter} ({Percent(report.LayerBytesAfter, report.LayerBytesBefore)})");
        Console.WriteLine($"folder bytes: {report.FolderBytesBefore} -> {report.FolderBytesAfter} ({Percent(report.FolderBytesAfter, report.FolderBytesBefore)})");
        return CommandLine.Ok;
    }

    private static void Validate(SparsifyOptions options)
    {
        if (!Directory.Exists(options.ModelFolder))
        {
            throw new UsageException($"model folder not found: {options.ModelFolder}");
        }

        if (File.Exists(options.OutputFolder) || (Directory.Exists(options.OutputFolder) && Directory.EnumerateFileSystemEntries(options.OutputFolder).Any()))
        {
            throw new UsageException($"'{options.OutputFolder}' exists and is not an empty folder");
        }

        if (options.Method == PruningMethod.Wanda && options.CalibrationText is null)
        {
            throw new UsageException("--method wanda needs --calibration FILE (text whose activations weigh the weights)");
        }

        if (options.CalibrationText is { } text && !File.Exists(text))
        {
            throw new UsageException($"calibration file not found: {text}");
        }
    }

    private static string Percent(long part, long whole) => whole == 0 ? "n/a" : $"{100.0 * part / whole:F1}%";
}
