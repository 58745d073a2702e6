using System.Text.Json.Nodes;

namespace Serving.Runtime.Models;

/// <summary>
/// Reads the parts of onnxruntime-genai's <c>genai_config.json</c> that name the decoder's
/// file and tensors (<c>model.decoder.filename</c>, <c>inputs</c>, <c>outputs</c>, with
/// <c>%d</c> for the layer index).
/// </summary>
internal static class GenAiConfig
{
    public static string? FileName(JsonObject? genai) => Decoder(genai)?["filename"]?.GetValue<string>();

    public static DecoderNames Names(JsonObject? genai)
    {
        var defaults = new DecoderNames();
        JsonObject? decoder = Decoder(genai);
        if (decoder is null)
        {
            return defaults;
        }

        JsonObject? inputs = decoder["inputs"] as JsonObject;
        JsonObject? outputs = decoder["outputs"] as JsonObject;
        return new DecoderNames
        {
            InputIds = Name(inputs, "input_ids") ?? defaults.InputIds,
            AttentionMask = Name(inputs, "attention_mask") ?? defaults.AttentionMask,
            PositionIds = Name(inputs, "position_ids") ?? defaults.PositionIds,
            PastKey = Name(inputs, "past_key_names") ?? defaults.PastKey,
            PastValue = Name(inputs, "past_value_names") ?? defaults.PastValue,
            Logits = Name(outputs, "logits") ?? defaults.Logits,
            PresentKey = Name(outputs, "present_key_names") ?? defaults.PresentKey,
            PresentValue = Name(outputs, "present_value_names") ?? defaults.PresentValue,
        };
    }

    private static JsonObject? Decoder(JsonObject? genai) => genai?["model"]?["decoder"] as JsonObject;

    /// <summary>genai writes layer patterns as <c>past_key_values.%d.key</c>; ours use {0}.</summary>
    private static string? Name(JsonObject? section, string key) =>
        section?[key]?.GetValue<string>().Replace("%d", "{0}", StringComparison.Ordinal);
}
