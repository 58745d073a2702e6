using System.Text.Json.Nodes;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>Whether a decoder layer attends to the whole cache or to a sliding window.</summary>
public enum AttentionKind
{
    Full,
    Sliding,
}

/// <summary>
/// The architecture of a Gemma 3 text decoder, with Hugging Face's <c>config.json</c> field
/// names (model_type <c>gemma3_text</c>). Immutable; <see cref="Validate"/> runs on every
/// construction path that reads user input.
/// </summary>
public sealed record Gemma3Config
{
    public const string ModelType = "gemma3_text";

    public int VocabSize { get; init; }
    public int HiddenSize { get; init; }
    public int IntermediateSize { get; init; }
    public int NumHiddenLayers { get; init; }
    public int NumAttentionHeads { get; init; }
    public int NumKeyValueHeads { get; init; }
    public int HeadDim { get; init; }
    public int SlidingWindow { get; init; }
    /// <summary>Every <c>SlidingWindowPattern</c>-th layer is global (Gemma 3: 6, so 5 local : 1 global).</summary>
    public int SlidingWindowPattern { get; init; } = 6;
    public double RopeTheta { get; init; } = 1_000_000.0;
    public double RopeLocalBaseFreq { get; init; } = 10_000.0;
    public double QueryPreAttnScalar { get; init; }
    public double RmsNormEps { get; init; } = 1e-6;
    public int MaxPositionEmbeddings { get; init; } = 32_768;
    public int BosTokenId { get; init; } = 2;
    public int EosTokenId { get; init; } = 1;
    public int PadTokenId { get; init; }
    public bool TieWordEmbeddings { get; init; } = true;
    public string HiddenActivation { get; init; } = "gelu_pytorch_tanh";

    public int NumQueryGroups => NumAttentionHeads / NumKeyValueHeads;

    /// <summary>
    /// Each layer's attention, when config.json lists it (<c>layer_types</c>); otherwise
    /// <see cref="SlidingWindowPattern"/> decides.
    /// </summary>
    public IReadOnlyList<AttentionKind>? LayerTypes { get; init; }

    public AttentionKind LayerKind(int layer) =>
        LayerTypes is { } types ? types[layer]
        : (layer + 1) % SlidingWindowPattern == 0 ? AttentionKind.Full : AttentionKind.Sliding;

    public double RopeBase(int layer) =>
        LayerKind(layer) == AttentionKind.Full ? RopeTheta : RopeLocalBaseFreq;

    /// <summary>Number of weights, counting the tied embedding once.</summary>
    public long ParameterCount
    {
        get
        {
            long h = HiddenSize, q = (long)NumAttentionHeads * HeadDim, kv = (long)NumKeyValueHeads * HeadDim;
            long attention = h * q + 2 * h * kv + q * h + 2L * HeadDim;
            long mlp = 3 * h * IntermediateSize;
            long norms = 4 * h;
            return (long)VocabSize * h + NumHiddenLayers * (attention + mlp + norms) + h;
        }
    }

    /// <summary>Throws <see cref="ArgumentException"/> naming the first inconsistent field.</summary>
    public void Validate()
    {
        Require(VocabSize > 0, "vocab_size", "must be positive");
        Require(HiddenSize > 0, "hidden_size", "must be positive");
        Require(IntermediateSize > 0, "intermediate_size", "must be positive");
        Require(NumHiddenLayers > 0, "num_hidden_layers", "must be positive");
        Require(NumAttentionHeads > 0, "num_attention_heads", "must be positive");
        Require(NumKeyValueHeads > 0 && NumAttentionHeads % NumKeyValueHeads == 0,
            "num_key_value_heads", $"must divide num_attention_heads ({NumAttentionHeads})");
        Require(HeadDim > 0 && HeadDim % 2 == 0, "head_dim", "must be a positive even number (RoPE pairs)");
        Require(SlidingWindow > 1, "sliding_window", "must be at least 2");
        Require(SlidingWindowPattern > 0, "sliding_window_pattern", "must be positive");
        Require(LayerTypes is null || LayerTypes.Count == NumHiddenLayers, "layer_types",
            $"has {LayerTypes?.Count} entries for {NumHiddenLayers} layers");
        Require(RopeTheta > 0 && RopeLocalBaseFreq > 0, "rope_theta", "RoPE bases must be positive");
        Require(QueryPreAttnScalar > 0, "query_pre_attn_scalar", "must be positive");
        Require(RmsNormEps > 0, "rms_norm_eps", "must be positive");
        Require(HiddenActivation is "gelu_pytorch_tanh" or "gelu_tanh",
            "hidden_activation", $"'{HiddenActivation}' is not supported (expected gelu_pytorch_tanh)");
        Require(TieWordEmbeddings, "tie_word_embeddings", "untied LM heads are not supported");
    }

    private static void Require(bool condition, string field, string message)
    {
        if (!condition)
        {
            throw new ArgumentException($"config field '{field}' {message}", field);
        }
    }

    /// <summary>The <c>config.json</c> object, as Hugging Face writes it for Gemma3ForCausalLM.</summary>
    public JsonObject ToJson()
    {
        var layerTypes = new JsonArray();
        for (int i = 0; i < NumHiddenLayers; i++)
        {
            layerTypes.Add(LayerKind(i) == AttentionKind.Full ? "full_attention" : "sliding_attention");
        }

        return new JsonObject
        {
            ["architectures"] = new JsonArray("Gemma3ForCausalLM"),
            ["model_type"] = ModelType,
            ["vocab_size"] = VocabSize,
            ["hidden_size"] = HiddenSize,
            ["intermediate_size"] = IntermediateSize,
            ["num_hidden_layers"] = NumHiddenLayers,
            ["num_attention_heads"] = NumAttentionHeads,
            ["num_key_value_heads"] = NumKeyValueHeads,
            ["head_dim"] = HeadDim,
            ["hidden_activation"] = HiddenActivation,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["rms_norm_eps"] = RmsNormEps,
            ["rope_theta"] = RopeTheta,
            ["rope_local_base_freq"] = RopeLocalBaseFreq,
            ["rope_scaling"] = null,
            ["sliding_window"] = SlidingWindow,
            ["sliding_window_pattern"] = SlidingWindowPattern,
            ["layer_types"] = layerTypes,
            ["query_pre_attn_scalar"] = QueryPreAttnScalar,
            ["attention_bias"] = false,
            ["attention_dropout"] = 0.0,
            ["final_logit_softcapping"] = null,
            ["attn_logit_softcapping"] = null,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["pad_token_id"] = PadTokenId,
            ["tie_word_embeddings"] = TieWordEmbeddings,
            ["torch_dtype"] = "float32",
            ["use_cache"] = true,
            ["transformers_version"] = "4.57.1",
            ["transformers.js_config"] = new JsonObject
            {
                ["use_external_data_format"] = true,
            },
        };
    }

    /// <summary>
    /// Reads a <c>config.json</c> object. Missing optional fields take Gemma 3 defaults;
    /// <c>layer_types</c>, when present, decides each layer's attention (newer transformers
    /// write the pattern as <c>_sliding_window_pattern</c>).
    /// </summary>
    public static Gemma3Config FromJson(JsonObject json)
    {
        var config = new Gemma3Config
        {
            VocabSize = Int(json, "vocab_size"),
            HiddenSize = Int(json, "hidden_size"),
            IntermediateSize = Int(json, "intermediate_size"),
            NumHiddenLayers = Int(json, "num_hidden_layers"),
            NumAttentionHeads = Int(json, "num_attention_heads"),
            NumKeyValueHeads = Int(json, "num_key_value_heads", Int(json, "num_attention_heads")),
            HeadDim = Int(json, "head_dim", 256),
            SlidingWindow = Int(json, "sliding_window", 512),
            SlidingWindowPattern = Int(json, "sliding_window_pattern", Int(json, "_sliding_window_pattern", 6)),
            LayerTypes = ReadLayerTypes(json["layer_types"]),
            RopeTheta = Double(json, "rope_theta", 1_000_000.0),
            RopeLocalBaseFreq = Double(json, "rope_local_base_freq", 10_000.0),
            QueryPreAttnScalar = Double(json, "query_pre_attn_scalar", Int(json, "head_dim", 256)),
            RmsNormEps = Double(json, "rms_norm_eps", 1e-6),
            MaxPositionEmbeddings = Int(json, "max_position_embeddings", 32_768),
            BosTokenId = Int(json, "bos_token_id", 2),
            EosTokenId = FirstInt(json, "eos_token_id", 1),
            PadTokenId = Int(json, "pad_token_id", 0),
            TieWordEmbeddings = Value<bool>(json["tie_word_embeddings"], "tie_word_embeddings", true),
            HiddenActivation = Text(json["hidden_activation"], "hidden_activation", "gelu_pytorch_tanh"),
        };
        config.Validate();
        return config;
    }

    private static AttentionKind[]? ReadLayerTypes(JsonNode? node)
    {
        if (node is null)
        {
            return null;
        }

        if (node is not JsonArray array)
        {
            throw new ArgumentException($"config field 'layer_types' must be a list, got {node.ToJsonString()}", "layer_types");
        }

        return [.. array.Select((entry, i) => Text(entry, "layer_types", "") switch
        {
            "full_attention" => AttentionKind.Full,
            "sliding_attention" => AttentionKind.Sliding,
            var other => throw new ArgumentException(
                $"config field 'layer_types' entry {i} is '{other}' (expected full_attention or sliding_attention)", "layer_types"),
        })];
    }

    private static int Int(JsonObject json, string name, int? fallback = null) =>
        Value(json[name], name, fallback);

    /// <summary>Hugging Face writes eos_token_id as a number or a list; the first id is the model's own.</summary>
    private static int FirstInt(JsonObject json, string name, int fallback) =>
        json[name] is JsonArray array ? Value<int>(array.Count > 0 ? array[0] : null, name, null) : Int(json, name, fallback);

    private static double Double(JsonObject json, string name, double fallback) => Value<double>(json[name], name, fallback);

    private static T Value<T>(JsonNode? node, string name, T? fallback)
        where T : struct
    {
        if (node is null)
        {
            return fallback ?? throw new ArgumentException($"config field '{name}' is missing", name);
        }

        try
        {
            return node.GetValue<T>();
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ArgumentException($"config field '{name}' must be {typeof(T).Name.ToLowerInvariant()}, got {node.ToJsonString()}", name, e);
        }
    }

    private static string Text(JsonNode? node, string name, string fallback)
    {
        if (node is null)
        {
            return fallback;
        }

        return node is JsonValue value && value.TryGetValue(out string? text)
            ? text
            : throw new ArgumentException($"config field '{name}' must be a string, got {node.ToJsonString()}", name);
    }
}
