namespace Serving.Runtime.Models.Clip;

/// <summary>Which file a weight belongs to.</summary>
public enum ClipTower
{
    Text,
    Vision,
}

/// <summary>
/// One CLIP weight: Hugging Face parameter name, ONNX layout, and the N(mean, std²) its
/// seeded values are drawn from. Linear weights are MatMul right operands, <c>[in, out]</c>.
/// </summary>
public sealed record ClipWeight(string Name, ClipTower Tower, int[] Shape, double Std, float Mean = 0f)
{
    public long ElementCount => Shape.Aggregate(1L, (product, dim) => product * dim);
}

/// <summary>The weights of both towers in file order, and seeded values for them.</summary>
public static class ClipWeights
{
    /// <summary>Hugging Face's initializer_range; keeps embeddings small beside the LN-scaled stream.</summary>
    private const double EmbeddingStd = 0.02;

    /// <summary>LayerNorm gains 1 ± 0.1 and biases ± 0.1, so a test sees when either is ignored.</summary>
    private const double NormStd = 0.1;

    public const string TokenEmbedding = "text_model.embeddings.token_embedding.weight";
    public const string TextPositions = "text_model.embeddings.position_embedding.weight";
    public const string TextFinalNorm = "text_model.final_layer_norm";
    public const string TextProjection = "text_projection.weight";
    public const string ClassEmbedding = "vision_model.embeddings.class_embedding";
    public const string PatchEmbedding = "vision_model.embeddings.patch_embedding.weight";
    public const string VisionPositions = "vision_model.embeddings.position_embedding.weight";

    /// <summary>Hugging Face's own spelling ("layrnorm"), kept so the names match real checkpoints.</summary>
    public const string VisionPreNorm = "vision_model.pre_layrnorm";
    public const string VisionPostNorm = "vision_model.post_layernorm";
    public const string VisualProjection = "visual_projection.weight";

    public static string Layer(ClipTower tower, int layer, string name) =>
        $"{(tower == ClipTower.Text ? "text_model" : "vision_model")}.encoder.layers.{layer}.{name}";

    public static IReadOnlyList<ClipWeight> Specs(ClipConfig config)
    {
        var specs = new List<ClipWeight>
        {
            new(TokenEmbedding, ClipTower.Text, [config.VocabSize, config.Text.HiddenSize], EmbeddingStd),
            new(TextPositions, ClipTower.Text, [config.MaxPositionEmbeddings, config.Text.HiddenSize], EmbeddingStd),
        };
        AddEncoder(specs, ClipTower.Text, config.Text);
        AddNorm(specs, ClipTower.Text, TextFinalNorm, config.Text.HiddenSize);
        specs.Add(Linear(TextProjection, ClipTower.Text, config.Text.HiddenSize, config.ProjectionDim));

        int hidden = config.Vision.HiddenSize, p = config.PatchSize;
        specs.Add(new(ClassEmbedding, ClipTower.Vision, [hidden], EmbeddingStd));
        specs.Add(new(PatchEmbedding, ClipTower.Vision, [hidden, ClipConfig.NumChannels, p, p], 1.0 / Math.Sqrt(ClipConfig.NumChannels * p * p)));
        specs.Add(new(VisionPositions, ClipTower.Vision, [config.NumPatches + 1, hidden], EmbeddingStd));
        AddNorm(specs, ClipTower.Vision, VisionPreNorm, hidden);
        AddEncoder(specs, ClipTower.Vision, config.Vision);
        AddNorm(specs, ClipTower.Vision, VisionPostNorm, hidden);
        specs.Add(Linear(VisualProjection, ClipTower.Vision, hidden, config.ProjectionDim));
        return specs;
    }

    public static float[] Random(ClipWeight spec, ulong seed) =>
        SeededGaussian.Sample(spec.Name, spec.ElementCount, spec.Std, seed, spec.Mean);

    private static void AddEncoder(List<ClipWeight> specs, ClipTower tower, ClipTowerConfig config)
    {
        int h = config.HiddenSize, inter = config.IntermediateSize;
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            AddNorm(specs, tower, Layer(tower, i, "layer_norm1"), h);
            foreach (string proj in (string[])["q_proj", "k_proj", "v_proj", "out_proj"])
            {
                specs.Add(Linear(Layer(tower, i, $"self_attn.{proj}.weight"), tower, h, h));
                specs.Add(new(Layer(tower, i, $"self_attn.{proj}.bias"), tower, [h], NormStd));
            }

            AddNorm(specs, tower, Layer(tower, i, "layer_norm2"), h);
            specs.Add(Linear(Layer(tower, i, "mlp.fc1.weight"), tower, h, inter));
            specs.Add(new(Layer(tower, i, "mlp.fc1.bias"), tower, [inter], NormStd));
            specs.Add(Linear(Layer(tower, i, "mlp.fc2.weight"), tower, inter, h));
            specs.Add(new(Layer(tower, i, "mlp.fc2.bias"), tower, [h], NormStd));
        }
    }

    private static ClipWeight Linear(string name, ClipTower tower, int input, int output) =>
        new(name, tower, [input, output], 1.0 / Math.Sqrt(input));

    private static void AddNorm(List<ClipWeight> specs, ClipTower tower, string prefix, int size)
    {
        specs.Add(new($"{prefix}.weight", tower, [size], NormStd, Mean: 1f));
        specs.Add(new($"{prefix}.bias", tower, [size], NormStd));
    }
}
