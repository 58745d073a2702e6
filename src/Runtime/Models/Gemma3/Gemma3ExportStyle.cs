namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// The graph layouts the builder writes (<c>serving models create --style</c>); docs/models.md lists
/// each one's facts and their sources.
/// </summary>
public enum Gemma3ExportStyle
{
    /// <summary>Ours: standard operators, explicit positions, <c>num_logits_to_keep</c>, sliding layers return window − 1 slots.</summary>
    Serving,

    /// <summary>onnx-community's transformers.js exports: one <c>com.microsoft</c> GroupQueryAttention per layer with its own rotary.</summary>
    OnnxCommunity,

    /// <summary>Hugging Face Optimum's exports: standard operators as traced from PyTorch, every layer keeps every past token.</summary>
    Optimum,

    /// <summary>ONNX Runtime GenAI's model builder: packed q/k/v, GroupQueryAttention with a shared past/present buffer, genai_config.json.</summary>
    GenAi,
}

public static class Gemma3ExportStyles
{
    public static IReadOnlyList<string> Names { get; } = ["serving", "onnx-community", "optimum", "genai"];

    public static Gemma3ExportStyle? Find(string name) => name switch
    {
        "serving" => Gemma3ExportStyle.Serving,
        "onnx-community" => Gemma3ExportStyle.OnnxCommunity,
        "optimum" => Gemma3ExportStyle.Optimum,
        "genai" => Gemma3ExportStyle.GenAi,
        _ => null,
    };

    public static string Name(this Gemma3ExportStyle style) => Names[(int)style];
}
