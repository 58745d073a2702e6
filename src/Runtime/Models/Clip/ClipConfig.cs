using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Runtime.Models.Clip;

/// <summary>The shape of one transformer tower (text or vision): Hugging Face field names.</summary>
public sealed record ClipTowerConfig(int HiddenSize, int IntermediateSize, int NumAttentionHeads, int NumHiddenLayers, float LayerNormEps = 1e-5f)
{
    public int HeadDim => HiddenSize / NumAttentionHeads;
}

/// <summary>
/// A CLIP dual encoder's <c>config.json</c> (<c>model_type: clip</c>, CLIPModel). The text
/// tower reads <see cref="MaxPositionEmbeddings"/> tokens (77 in every OpenAI CLIP); the vision
/// tower cuts an <see cref="ImageSize"/>² image into <see cref="PatchSize"/>² patches.
/// </summary>
public sealed record ClipConfig(
    ClipTowerConfig Text,
    ClipTowerConfig Vision,
    int VocabSize,
    int MaxPositionEmbeddings,
    int ImageSize,
    int PatchSize,
    int ProjectionDim,
    int BosTokenId,
    int EosTokenId)
{
    public const string ModelType = "clip";
    public const int NumChannels = 3;

    public long ParameterCount => ClipWeights.Specs(this).Sum(spec => spec.ElementCount);

    public int NumPatches => (ImageSize / PatchSize) * (ImageSize / PatchSize);

    public void Validate()
    {
        foreach (ClipTowerConfig tower in (ClipTowerConfig[])[Text, Vision])
        {
            if (tower.HiddenSize <= 0 || tower.NumAttentionHeads <= 0 || tower.HiddenSize % tower.NumAttentionHeads != 0 || tower.NumHiddenLayers <= 0 || tower.IntermediateSize <= 0)
            {
                throw new ArgumentException($"tower {tower}: hidden_size must be a positive multiple of num_attention_heads, layers and intermediate_size positive");
            }
        }

        if (ImageSize <= 0 || PatchSize <= 0 || ImageSize % PatchSize != 0)
        {
            throw new ArgumentException($"image_size {ImageSize} must be a positive multiple of patch_size {PatchSize}");
        }

        if (ProjectionDim <= 0 || MaxPositionEmbeddings < 2 || EosTokenId >= VocabSize || BosTokenId >= VocabSize)
        {
            throw new ArgumentException("projection_dim must be positive, max_position_embeddings ≥ 2, bos/eos ids inside the vocabulary");
        }
    }

    public JsonObject ToJson() => new()
    {
        ["architectures"] = new JsonArray("CLIPModel"),
        ["model_type"] = ModelType,
        ["projection_dim"] = ProjectionDim,
        ["logit_scale_init_value"] = 2.6592,
        ["text_config"] = Tower(Text, "clip_text_model", new JsonObject
        {
            ["vocab_size"] = VocabSize,
            ["max_position_embeddings"] = MaxPositionEmbeddings,
            ["bos_token_id"] = BosTokenId,
            ["eos_token_id"] = EosTokenId,
            ["pad_token_id"] = EosTokenId,
        }),
        ["vision_config"] = Tower(Vision, "clip_vision_model", new JsonObject
        {
            ["image_size"] = ImageSize,
            ["patch_size"] = PatchSize,
            ["num_channels"] = NumChannels,
        }),
        ["transformers.js_config"] = new JsonObject { ["use_external_data_format"] = true },
    };

    private JsonObject Tower(ClipTowerConfig tower, string modelType, JsonObject extra)
    {
        extra["model_type"] = modelType;
        extra["hidden_size"] = tower.HiddenSize;
        extra["intermediate_size"] = tower.IntermediateSize;
        extra["num_attention_heads"] = tower.NumAttentionHeads;
        extra["num_hidden_layers"] = tower.NumHiddenLayers;
        extra["layer_norm_eps"] = tower.LayerNormEps;
        extra["hidden_act"] = "quick_gelu";
        extra["projection_dim"] = ProjectionDim;
        return extra;
    }

    /// <summary>Reads <c>config.json</c>; every failure names the file and the field.</summary>
    public static ClipConfig Load(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path))
        {
            throw new ModelLoadException(path, "not found");
        }

        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = doc.RootElement;
            string? type = root.TryGetProperty("model_type", out JsonElement t) ? t.GetString() : null;
            if (type != ModelType)
            {
                throw new ModelLoadException(path, $"model_type is '{type}', expected '{ModelType}'");
            }

            JsonElement text = Section(path, root, "text_config"), vision = Section(path, root, "vision_config");
            return new ClipConfig(
                ReadTower(path, text), ReadTower(path, vision),
                Int(path, text, "vocab_size", 49408), Int(path, text, "max_position_embeddings", 77),
                Int(path, vision, "image_size", 224), Int(path, vision, "patch_size", 32),
                Int(path, root, "projection_dim", 512),
                Int(path, text, "bos_token_id", 49406), Int(path, text, "eos_token_id", 49407));
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(path, $"invalid JSON: {e.Message}");
        }
    }

    private static JsonElement Section(string path, JsonElement root, string name) =>
        root.TryGetProperty(name, out JsonElement section) && section.ValueKind == JsonValueKind.Object
            ? section
            : throw new ModelLoadException(path, $"has no '{name}' object");

    private static ClipTowerConfig ReadTower(string path, JsonElement tower) => new(
        Int(path, tower, "hidden_size", 512), Int(path, tower, "intermediate_size", 2048),
        Int(path, tower, "num_attention_heads", 8), Int(path, tower, "num_hidden_layers", 12),
        tower.TryGetProperty("layer_norm_eps", out JsonElement eps) && eps.ValueKind == JsonValueKind.Number ? eps.GetSingle() : 1e-5f);

    /// <summary>Hugging Face leaves fields at their defaults out of config.json; the defaults are CLIPConfig's.</summary>
    private static int Int(string path, JsonElement section, string name, int fallback)
    {
        if (!section.TryGetProperty(name, out JsonElement value))
        {
            return fallback;
        }

        return value.ValueKind == JsonValueKind.Number && value.TryGetInt32(out int number)
            ? number
            : throw new ModelLoadException(path, $"'{name}' must be an integer, not {value.ValueKind}");
    }
}
