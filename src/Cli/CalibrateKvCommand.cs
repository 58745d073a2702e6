using System.CommandLine;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Cli;

/// <summary>
/// <c>serving calibrate-kv --model DIR --text FILE [--max-tokens N]</c>: TriAttention's query
/// statistics, written into the model folder as kv_calibration.json.
/// </summary>
internal static class CalibrateKvCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder (Hugging Face ONNX layout); the calibration is written into it", Required = true };
        var text = new Option<FileInfo>("--text") { Description = "Plain text, UTF-8 (the paper finds 50k tokens enough, and the domain unimportant)", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Use at most this many tokens of the text", DefaultValueFactory = _ => 50_000 };
        var command = new Command("calibrate-kv", "Measure the pre-RoPE query centres TriAttention KV compression needs") { model, text, maxTokens };
        command.SetAction(result => Run(result.GetValue(model)!, result.GetValue(text)!, result.GetValue(maxTokens)));
        return command;
    }

    private static int Run(DirectoryInfo folder, FileInfo text, int maxTokens)
    {
        if (!folder.Exists)
        {
            throw new UsageException($"model folder not found: {folder.FullName}");
        }

        if (!text.Exists)
        {
            throw new UsageException($"text not found: {text.FullName}");
        }

        if (maxTokens < 1)
        {
            throw new UsageException($"--max-tokens must be at least 1, got {maxTokens}");
        }

        using ILoggerFactory logging = CommandLine.StderrLogging();
        using DecoderModel decoder = DecoderModel.Load(folder.FullName, new DecoderLoadOptions { ReadKvCalibration = false }, logging.CreateLogger("serving"));
        int[] tokens = decoder.Tokenizer.Encode(File.ReadAllText(text.FullName));
        if (tokens.Length == 0)
        {
            throw new UsageException($"{text.FullName} has no tokens");
        }

        tokens = tokens[..Math.Min(tokens.Length, maxTokens)];
        var clock = Stopwatch.StartNew();
        KvCalibration calibration;
        try
        {
            calibration = ProgressBars.Run("tokens", progress => KvCalibrator.Calibrate(decoder.OnnxPath, decoder.Config, tokens, progress));
        }
        catch (InvalidDataException e)
        {
            // The graph loads but its queries cannot be found: not a model this tool can calibrate.
            throw new UsageException(e.Message);
        }

        string path = Path.Combine(folder.FullName, KvCalibration.FileName);
        calibration.Save(path);
        Console.Error.WriteLine($"Done in {clock.Elapsed.TotalSeconds:F1} s");
        Console.WriteLine($"tokens: {calibration.Tokens}");
        Console.WriteLine($"layers: {calibration.Layers} x {calibration.QueryHeads} query heads x {calibration.Bands} bands");
        for (int layer = 0; layer < calibration.Layers; layer++)
        {
            if (decoder.Config.LayerKind(layer) == AttentionKind.Full)
            {
                Console.WriteLine($"layer {layer} (global): query concentration |E[q]| / E|q| = {Concentration(calibration, layer):F3}");
            }
        }

        Console.WriteLine($"wrote: {path}");
        return CommandLine.Ok;
    }

    /// <summary>Σ|E[q_f]| / Σ E|q_f| over heads and bands: 1 when every query points the same way (TriAttention's premise), near 0 when they scatter.</summary>
    private static double Concentration(KvCalibration calibration, int layer)
    {
        double centre = 0, spread = 0;
        for (int head = 0; head < calibration.QueryHeads; head++)
        {
            for (int f = 0; f < calibration.Bands; f++)
            {
                double re = calibration.MeanRe(layer, head)[f], im = calibration.MeanIm(layer, head)[f];
                centre += Math.Sqrt(re * re + im * im);
                spread += calibration.MeanModulus(layer, head)[f];
            }
        }

        return spread > 0 ? centre / spread : 0;
    }
}
