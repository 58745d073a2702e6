using System.Text.Json.Nodes;

namespace Serving.Runtime.Models;

/// <summary>
/// The weight variants of one model folder, named as transformers.js names them
/// (<c>src/utils/dtypes.js</c>): a dtype picks <c>onnx/model{suffix}.onnx</c>.
/// </summary>
public static class OnnxVariant
{
    private static readonly Dictionary<string, string> Suffixes = new(StringComparer.Ordinal)
    {
        ["fp32"] = "",
        ["fp16"] = "_fp16",
        ["q8"] = "_quantized",
        ["int8"] = "_int8",
        ["uint8"] = "_uint8",
        ["q4"] = "_q4",
        ["q4f16"] = "_q4f16",
        ["bnb4"] = "_bnb4",
    };

    /// <summary>Every dtype transformers.js knows, in its order.</summary>
    public static IReadOnlyCollection<string> Dtypes => Suffixes.Keys;

    public static bool IsKnown(string dtype) => Suffixes.ContainsKey(dtype);

    /// <summary><c>onnx/model_q4.onnx</c> for q4, <c>onnx/model.onnx</c> for fp32.</summary>
    public static string FileName(string dtype) => Suffixes.TryGetValue(dtype, out string? suffix)
        ? $"onnx/model{suffix}.onnx"
        : throw new ArgumentException($"unknown dtype '{dtype}' (known: {string.Join(", ", Suffixes.Keys)})", nameof(dtype));

    /// <summary>
    /// <c>config.json</c> → <c>"transformers.js_config": {"dtype": ...}</c>: a string, or an object
    /// per file name (its <c>model</c> entry is ours); null when absent.
    /// </summary>
    public static string? ConfigDtype(JsonObject config)
    {
        JsonNode? dtype = (config["transformers.js_config"] as JsonObject)?["dtype"];
        if (dtype is JsonObject perFile)
        {
            dtype = perFile["model"];
        }

        return dtype switch
        {
            null => null,
            JsonValue value when value.TryGetValue(out string? text) => text,
            _ => throw new InvalidOperationException($"transformers.js_config.dtype must be a string or an object of strings, not {dtype.ToJsonString()}"),
        };
    }
}
