using System.CommandLine;
using System.Diagnostics;
using Serving.Runtime.Quantization;

namespace Serving.Cli;

/// <summary>
/// <c>serving quantize --model DIR --out DIR --dtype q4|q8|fp16 [--block-size 64] [--symmetric|--asymmetric]
/// [--accuracy-level 4] [--method rtn|awq --calibration FILE [--calibration-tokens 4096]] [--embedding-bits 4|8]</c>.
/// </summary>
internal static class QuantizeCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder to quantize (Hugging Face ONNX layout, fp32 onnx/model.onnx)", Required = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder to write: a copy of --model plus the variant (must be new or empty)", Required = true };
        var dtype = new Option<string>("--dtype") { Description = "q4 → onnx/model_q4.onnx, q8 → onnx/model_quantized.onnx, fp16 → onnx/model_fp16.onnx", Required = true };
        var blockSize = new Option<int>("--block-size") { Description = "Weights per quantization block along K (power of two ≥ 16; 64: 4.5 bits per 4-bit weight, as llama.cpp's q4_0; 32: onnx-community's layout)", DefaultValueFactory = _ => QuantizeOptions.DefaultBlockSize };
        var symmetric = new Option<bool>("--symmetric") { Description = "No zero points (the default)" };
        var asymmetric = new Option<bool>("--asymmetric") { Description = "One zero point per block" };
        var accuracy = new Option<int>("--accuracy-level") { Description = "MatMulNBits accuracy_level: 4 = int8 activations (fast CPU path), 1 = fp32", DefaultValueFactory = _ => 4 };
        var method = new Option<string>("--method") { Description = "rtn: round to nearest per block; awq: activation-aware channel scales searched on --calibration text, then rtn", DefaultValueFactory = _ => "rtn" };
        var calibration = new Option<FileInfo?>("--calibration") { Description = "Text file whose activations awq weighs the input channels by" };
        var embeddingBits = new Option<int?>("--embedding-bits") { Description = "Bits of the embedding and its tied LM head (4 or 8; default: the variant's). llama.cpp's q4_0 keeps them at 8" };
        var calibrationTokens = new Option<int>("--calibration-tokens") { Description = "Tokens of the calibration text awq runs at most", DefaultValueFactory = _ => 4096 };
        var command = new Command("quantize", "Add a q4, q8 or fp16 weight variant to a copy of a model folder (transformers.js file names)")
        {
            model, output, dtype, blockSize, symmetric, asymmetric, accuracy, method, calibration, calibrationTokens, embeddingBits,
        };
        command.SetAction(result =>
        {
            if (result.GetValue(symmetric) && result.GetValue(asymmetric))
            {
                throw new UsageException("--symmetric and --asymmetric exclude each other");
            }

            return Run(new QuantizeOptions(result.GetValue(model)!.FullName, result.GetValue(output)!.FullName, result.GetValue(dtype)!)
            {
                BlockSize = result.GetValue(blockSize),
                Symmetric = !result.GetValue(asymmetric),
                AccuracyLevel = result.GetValue(accuracy),
                Method = result.GetValue(method)!,
                CalibrationText = result.GetValue(calibration)?.FullName,
                CalibrationTokens = result.GetValue(calibrationTokens),
                EmbeddingBits = result.GetValue(embeddingBits),
            });
        });
        return command;
    }

    private static int Run(QuantizeOptions options)
    {
        Validate(options);
        Console.Error.WriteLine($"Quantizing {options.ModelFolder} to {options.Dtype} into {options.OutputFolder}");
        var clock = Stopwatch.StartNew();
        QuantizeReport report;
        try
        {
            report = options.Method == "awq"
                ? ProgressBars.Run(["awq scale search", "tensors"], progress => Quantizer.Run(options, progress[1], progress[0]))
                : ProgressBars.Run("tensors", progress => Quantizer.Run(options, progress));
        }
        catch (InvalidDataException e)
        {
            // The folder parsed as a path but holds no model this tool can quantize (or one already quantized).
            throw new UsageException(e.Message);
        }

        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"file: {report.OnnxFile}");
        Console.WriteLine($"projections: {report.Layers}");
        Console.WriteLine($"embedding: {(report.Embedding ? report.TiedHead ? "quantized, tied LM head reads the same tensor" : "quantized" : "kept")}");
        Console.WriteLine($"weight bytes: {report.WeightBytesBefore} -> {report.WeightBytesAfter} ({Percent(report.WeightBytesAfter, report.WeightBytesBefore)})");
        Console.WriteLine($"variant bytes: {report.VariantBytes}");
        Console.WriteLine($"folder bytes: {report.FolderBytes}");
        foreach (var group in report.Awq ?? [])
        {
            Console.WriteLine($"awq: {group.Input} -> alpha {group.Alpha:F2}, output error {group.AwqError:G4} (rtn {group.RtnError:G4}), 1/s folded into {group.FoldedInto}");
        }
        return CommandLine.Ok;
    }

    private static void Validate(QuantizeOptions options)
    {
        if (options.Validate() is { } invalid)
        {
            throw new UsageException(invalid);
        }

        if (!Directory.Exists(options.ModelFolder))
        {
            throw new UsageException($"model folder not found: {options.ModelFolder}");
        }

        if (File.Exists(options.OutputFolder) || (Directory.Exists(options.OutputFolder) && Directory.EnumerateFileSystemEntries(options.OutputFolder).Any()))
        {
            throw new UsageException($"'{options.OutputFolder}' exists and is not an empty folder");
        }
    }

    private static string Percent(long part, long whole) => whole == 0 ? "n/a" : $"{100.0 * part / whole:F1}%";
}
