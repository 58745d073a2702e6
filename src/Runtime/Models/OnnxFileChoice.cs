using System.Text.Json.Nodes;

namespace Serving.Runtime.Models;

/// <summary>
/// Which .onnx file of a folder <see cref="DecoderModel.Load"/> opens, first rule that applies:
/// an explicit <see cref="DecoderLoadOptions.OnnxFile"/>; an explicit
/// <see cref="DecoderLoadOptions.Dtype"/>; config.json's <c>transformers.js_config.dtype</c>;
/// genai_config.json's <c>model.decoder.filename</c>; onnx/model.onnx, then model.onnx.
/// A dtype's file missing is an error naming it, never a silent fallback to another variant.
/// </summary>
internal static class OnnxFileChoice
{
    public static string Resolve(string folder, DecoderLoadOptions options, string? genaiFile, string configPath, JsonObject config)
    {
        if (options.OnnxFile is { } file)
        {
            return Existing(folder, file);
        }

        if (options.Dtype is { } dtype)
        {
            if (!OnnxVariant.IsKnown(dtype))
            {
                throw new ArgumentException($"unknown dtype '{dtype}' (known: {string.Join(", ", OnnxVariant.Dtypes)})", nameof(options));
            }

            return Variant(folder, dtype, "asked for");
        }

        // A dtype in config.json is a choice made for this folder; genai_config.json's file is the
        // export's default (our writer always names onnx/model.onnx), so the dtype wins.
        if (ConfigDtype(configPath, config) is { } configured)
        {
            return Variant(folder, configured, "config.json's transformers.js_config.dtype");
        }

        if (genaiFile is not null)
        {
            return Existing(folder, genaiFile);
        }

        string[] candidates = [Path.Combine(folder, "onnx", "model.onnx"), Path.Combine(folder, "model.onnx")];
        return candidates.FirstOrDefault(File.Exists)
            ?? throw new ModelLoadException(candidates[0], "ONNX model file not found (also looked for model.onnx in the folder)");
    }

    private static string Existing(string folder, string relative)
    {
        string path = Path.Combine(folder, relative);
        return File.Exists(path) ? path : throw new ModelLoadException(path, "ONNX model file not found");
    }

    /// <summary>onnx/model{suffix}.onnx, or model{suffix}.onnx at the top of an Optimum-style folder.</summary>
    private static string Variant(string folder, string dtype, string source)
    {
        string relative = OnnxVariant.FileName(dtype);
        string path = Path.Combine(folder, relative);
        string flat = Path.Combine(folder, Path.GetFileName(relative));
        if (File.Exists(path) || File.Exists(flat))
        {
            return File.Exists(path) ? path : flat;
        }

        throw new ModelLoadException(path, $"dtype {dtype} ({source}) needs {relative}, which the folder does not have; it has: {Present(folder)}");
    }

    private static string Present(string folder)
    {
        string onnx = Path.Combine(folder, "onnx");
        var files = (Directory.Exists(onnx) ? Directory.EnumerateFiles(onnx, "*.onnx") : [])
            .Concat(Directory.EnumerateFiles(folder, "*.onnx"))
            .Select(file => Path.GetRelativePath(folder, file))
            .Order(StringComparer.Ordinal)
            .ToList();
        return files.Count == 0 ? "no .onnx file" : string.Join(", ", files);
    }

    private static string? ConfigDtype(string configPath, JsonObject config)
    {
        string? dtype;
        try
        {
            dtype = OnnxVariant.ConfigDtype(config);
        }
        catch (InvalidOperationException e)
        {
            throw new ModelLoadException(configPath, e.Message, e);
        }

        return dtype is null || OnnxVariant.IsKnown(dtype)
            ? dtype
            : throw new ModelLoadException(configPath, $"transformers.js_config.dtype '{dtype}' is not a dtype transformers.js knows ({string.Join(", ", OnnxVariant.Dtypes)})");
    }
}
