using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Models;

/// <summary>
/// What a decoder graph offers ONNX Runtime GenAI, for <see cref="GenAiConfig.Build"/>.
/// </summary>
/// <param name="FileName">The graph, relative to the folder (GenAI opens this one file; variants are picked with its config overlay).</param>
/// <param name="HasPositionIds">The graph takes <c>position_ids</c> (GenAI feeds it only when named in the config).</param>
/// <param name="HasNumLogitsToKeep">
/// The graph takes <c>num_logits_to_keep</c>. genai_config.json has no key for it: GenAI claims an
/// input of exactly that name by itself and feeds <c>[1]</c> holding 0 (every position's logits),
/// so the graph must accept that shape.
/// </param>
/// <param name="PastPresentShareBuffer">Past and present are one preallocated buffer (GroupQueryAttention graphs); false for graphs that concatenate.</param>
public sealed record GenAiDecoderLayout(string FileName, bool HasPositionIds, bool HasNumLogitsToKeep, bool PastPresentShareBuffer)
{
    /// <summary>
    /// The most slots a sliding layer's present holds (ours: sliding_window − 1), or null when
    /// sliding layers return every token. Without past/present sharing GenAI allocates each present
    /// before the run, and ONNX Runtime refuses a computed shape that differs from it.
    /// </summary>
    public int? SlidingPresentLength { get; init; }
}

/// <summary>
/// onnxruntime-genai's <c>genai_config.json</c>: read for the decoder's file and tensor names
/// (<c>model.decoder.filename</c>, <c>inputs</c>, <c>outputs</c>, <c>%d</c> for the layer index),
/// checked against config.json, and written for our folders as GenAI's model builder writes it
/// (src/python/py/models/builders/base.py, make_genai_config).
/// </summary>
public static class GenAiConfig
{
    /// <summary>GenAI's model type for Gemma3ForCausalLM (its model_type.h lists it among the text-only LLMs; "gemma3" is the vision model).</summary>
    public const string Gemma3TextType = "gemma3_text";

    public const string FileName = "genai_config.json";

    /// <summary>
    /// The genai_config.json of a Gemma 3 folder: the decoder's shapes and tensor names, and
    /// search defaults from <paramref name="generation"/> (GenAI's builder copies generation_config.json's).
    /// Keys GenAI does not know fail its load, so only keys its config.cpp parses are written.
    /// </summary>
    public static JsonObject Build(Gemma3Config config, GenerationDefaults generation, GenAiDecoderLayout layout)
    {
        var inputs = new JsonObject { ["input_ids"] = "input_ids", ["attention_mask"] = "attention_mask" };
        if (layout.HasPositionIds)
        {
            inputs["position_ids"] = "position_ids";
        }

        inputs["past_key_names"] = "past_key_values.%d.key";
        inputs["past_value_names"] = "past_key_values.%d.value";
        var decoder = new JsonObject
        {
            ["session_options"] = new JsonObject { ["log_id"] = "onnxruntime-genai", ["provider_options"] = new JsonArray() },
            ["filename"] = layout.FileName,
            ["head_size"] = config.HeadDim,
            ["hidden_size"] = config.HiddenSize,
            ["inputs"] = inputs,
            ["outputs"] = new JsonObject
            {
                ["logits"] = "logits",
                ["present_key_names"] = "present.%d.key",
                ["present_value_names"] = "present.%d.value",
            },
            ["num_attention_heads"] = config.NumAttentionHeads,
            ["num_hidden_layers"] = config.NumHiddenLayers,
            ["num_key_value_heads"] = config.NumKeyValueHeads,
        };
        if (layout.SlidingPresentLength is { } slots)
        {
            decoder["sliding_window"] = SlidingWindow(config, slots);
        }

        return new JsonObject
        {
            ["model"] = new JsonObject
            {
                ["bos_token_id"] = generation.BosTokenId,
                ["context_length"] = config.MaxPositionEmbeddings,
                ["decoder"] = decoder,
                ["eos_token_id"] = new JsonArray([.. generation.EosTokenIds.Select(id => JsonValue.Create(id))]),
                ["pad_token_id"] = generation.PadTokenId,
                ["type"] = Gemma3TextType,
                ["vocab_size"] = config.VocabSize,
            },
            ["search"] = Search(config, generation, layout),
        };
    }

    /// <summary>
    /// Sizes the sliding layers' presents to min(total, <paramref name="slots"/>). GenAI 0.20 on the CPU
    /// and CUDA allocates min(total, window_size + cache_slack) slots for the layers listed, taking
    /// a slack of 16 on the CPU when cache_slack is 0; so window_size is slots − 1 and cache_slack 1.
    /// window_size is read for nothing else while slide_inputs and slide_key_value_cache are false:
    /// the graph masks its window itself. Other execution providers ignore the block (uniform caches).
    /// </summary>
    private static JsonObject SlidingWindow(Gemma3Config config, int slots)
    {
        if (slots < 2)
        {
            throw new ArgumentOutOfRangeException(nameof(slots), slots, "GenAI ignores a sliding_window block whose window_size (slots − 1) is not positive");
        }

        return new JsonObject
        {
            ["window_size"] = slots - 1,
            ["slide_key_value_cache"] = false,
            ["slide_inputs"] = false,
            ["layers"] = new JsonArray([.. Enumerable.Range(0, config.NumHiddenLayers)
                .Where(layer => config.LayerKind(layer) == AttentionKind.Sliding).Select(layer => JsonValue.Create(layer))]),
            ["cache_slack"] = 1,
        };
    }

    /// <summary>GenAI's builder's search section: Hugging Face's neutral values, sampling from generation_config.json.</summary>
    private static JsonObject Search(Gemma3Config config, GenerationDefaults generation, GenAiDecoderLayout layout) => new()
    {
        ["diversity_penalty"] = 0.0,
        ["do_sample"] = generation.DoSample,
        ["early_stopping"] = true,
        ["length_penalty"] = 1.0,
        ["max_length"] = config.MaxPositionEmbeddings,
        ["min_length"] = 0,
        ["no_repeat_ngram_size"] = 0,
        ["num_beams"] = 1,
        ["num_return_sequences"] = 1,
        ["past_present_share_buffer"] = layout.PastPresentShareBuffer,
        ["repetition_penalty"] = 1.0,
        ["temperature"] = generation.Temperature,
        ["top_k"] = generation.TopK,
        ["top_p"] = generation.TopP,
    };

    internal static string? DecoderFile(JsonObject? genai) => Decoder(genai)?["filename"]?.GetValue<string>();

    internal static DecoderNames Names(JsonObject? genai)
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

    /// <summary>
    /// The first tensor genai_config.json names that <paramref name="graph"/> lacks, as "model.decoder.inputs.past_key_names
    /// 'past.%d.k' names 'past.0.k', which the graph does not have (its inputs: …)"; null when every named one is there.
    /// GenAI feeds and reads tensors by these names, so a missing one fails there and misleads here.
    /// </summary>
    internal static string? MissingTensor(JsonObject? genai, Onnx.Proto.GraphProto graph)
    {
        JsonObject? decoder = Decoder(genai);
        if (decoder is null)
        {
            return null;
        }

        foreach (var (section, declared) in new[] { ("inputs", graph.Input.Select(v => v.Name)), ("outputs", graph.Output.Select(v => v.Name)) })
        {
            var names = declared.ToHashSet(StringComparer.Ordinal);
            foreach (var (key, value) in decoder[section] as JsonObject ?? [])
            {
                if (value is not JsonValue text || !text.TryGetValue(out string? pattern))
                {
                    continue;
                }

                string name = pattern.Replace("%d", "0", StringComparison.Ordinal);
                if (!names.Contains(name))
                {
                    return $"model.decoder.{section}.{key} '{pattern}' names '{name}', which the graph does not have (its {section}: {string.Join(", ", declared.Take(8))}…)";
                }
            }
        }

        return null;
    }

    /// <summary>
    /// The first shape field that disagrees with config.json, as "model.decoder.num_hidden_layers = 3
    /// but config.json says num_hidden_layers = 4"; null when every field present agrees. GenAI sizes
    /// its KV cache from these fields, so a disagreement would fail or misread there.
    /// </summary>
    internal static string? Disagreement(JsonObject? genai, Gemma3Config config)
    {
        (string Path, JsonNode? Node, string ConfigKey, int Expected)[] fields =
        [
            ("model.decoder.num_hidden_layers", Decoder(genai)?["num_hidden_layers"], "num_hidden_layers", config.NumHiddenLayers),
            ("model.decoder.num_attention_heads", Decoder(genai)?["num_attention_heads"], "num_attention_heads", config.NumAttentionHeads),
            ("model.decoder.num_key_value_heads", Decoder(genai)?["num_key_value_heads"], "num_key_value_heads", config.NumKeyValueHeads),
            ("model.decoder.head_size", Decoder(genai)?["head_size"], "head_dim", config.HeadDim),
            ("model.decoder.hidden_size", Decoder(genai)?["hidden_size"], "hidden_size", config.HiddenSize),
            ("model.vocab_size", genai?["model"]?["vocab_size"], "vocab_size", config.VocabSize),
        ];
        foreach (var (path, node, configKey, expected) in fields)
        {
            if (node is not null && node.GetValue<int>() != expected)
            {
                return $"{path} = {node.ToJsonString()} but config.json says {configKey} = {expected}";
            }
        }

        return null;
    }

    private static JsonObject? Decoder(JsonObject? genai) => genai?["model"]?["decoder"] as JsonObject;

    /// <summary>genai writes layer patterns as <c>past_key_values.%d.key</c>; ours use {0}.</summary>
    private static string? Name(JsonObject? section, string key) =>
        section?[key]?.GetValue<string>().Replace("%d", "{0}", StringComparison.Ordinal);
}
