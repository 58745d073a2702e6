namespace Serving.Runtime.Models.Gemma3;

/// <summary>How a weight is initialised when no trained values are given.</summary>
public enum WeightInit
{
    /// <summary>N(0, 1/fan_in): keeps activations at unit scale through each linear layer.</summary>
    Linear,
    /// <summary>
    /// N(0, 0.02²), Hugging Face's initializer_range. Small beside the unit-RMS output of each
    /// post-norm sublayer: at N(0, 1/hidden) the token's own embedding dominated the residual
    /// stream and the tied LM head repeated the input token forever.
    /// </summary>
    Embedding,
    /// <summary>N(0, 0.1): RMSNorm weights w in (1 + w); non-zero so tests see the offset.</summary>
    Norm,
}

/// <summary>One weight tensor: Hugging Face parameter name, ONNX layout, initialiser.</summary>
/// <remarks>Linear weights are stored as MatMul right operands, <c>[in, out]</c> (PyTorch's transpose).</remarks>
public sealed record WeightSpec(string Name, int[] Shape, WeightInit Init)
{
    public long ElementCount => Shape.Aggregate(1L, (product, dim) => product * dim);
}

/// <summary>The weights of a Gemma 3 decoder, and seeded random values for them.</summary>
public static class Gemma3Weights
{
    public const string Embedding = "model.embed_tokens.weight";
    public const string FinalNorm = "model.norm.weight";

    public static string Layer(int layer, string name) => $"model.layers.{layer}.{name}";

    /// <summary>Every weight of the model in a fixed order (the order of the data file).</summary>
    public static IReadOnlyList<WeightSpec> Specs(Gemma3Config config)
    {
        int h = config.HiddenSize, d = config.HeadDim, inter = config.IntermediateSize;
        int q = config.NumAttentionHeads * d, kv = config.NumKeyValueHeads * d;
        var specs = new List<WeightSpec> { new(Embedding, [config.VocabSize, h], WeightInit.Embedding) };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            specs.Add(new(Layer(i, "input_layernorm.weight"), [h], WeightInit.Norm));
            specs.Add(new(Layer(i, "self_attn.q_proj.weight"), [h, q], WeightInit.Linear));
            specs.Add(new(Layer(i, "self_attn.k_proj.weight"), [h, kv], WeightInit.Linear));
            specs.Add(new(Layer(i, "self_attn.v_proj.weight"), [h, kv], WeightInit.Linear));
            specs.Add(new(Layer(i, "self_attn.q_norm.weight"), [d], WeightInit.Norm));
            specs.Add(new(Layer(i, "self_attn.k_norm.weight"), [d], WeightInit.Norm));
            specs.Add(new(Layer(i, "self_attn.o_proj.weight"), [q, h], WeightInit.Linear));
            specs.Add(new(Layer(i, "post_attention_layernorm.weight"), [h], WeightInit.Norm));
            specs.Add(new(Layer(i, "pre_feedforward_layernorm.weight"), [h], WeightInit.Norm));
            specs.Add(new(Layer(i, "mlp.gate_proj.weight"), [h, inter], WeightInit.Linear));
            specs.Add(new(Layer(i, "mlp.up_proj.weight"), [h, inter], WeightInit.Linear));
            specs.Add(new(Layer(i, "mlp.down_proj.weight"), [inter, h], WeightInit.Linear));
            specs.Add(new(Layer(i, "post_feedforward_layernorm.weight"), [h], WeightInit.Norm));
        }

        specs.Add(new(FinalNorm, [h], WeightInit.Norm));
        return specs;
    }

    /// <summary>
    /// The fp32 weights of one of our ONNX files by name (the initializers are indexed once, each tensor read
    /// when asked for); a missing one fails naming it.
    /// </summary>
    public static Func<WeightSpec, float[]> Reader(string onnxPath)
    {
        Onnx.Proto.ModelProto model = Onnx.OnnxModelFile.Load(onnxPath);
        string directory = Path.GetDirectoryName(Path.GetFullPath(onnxPath))!;
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);
        return spec => Read(initializers, spec.Name, directory);
    }

    internal static float[] Read(Dictionary<string, Onnx.Proto.TensorProto> initializers, string name, string directory) =>
        initializers.TryGetValue(name, out Onnx.Proto.TensorProto? tensor)
            ? Onnx.TensorData.ReadFloats(tensor, directory)
            : throw new InvalidDataException($"the ONNX file has no initializer '{name}' (not one of our fp32 Gemma 3 exports?)");

    /// <summary>Seeded values for one weight (see <see cref="SeededGaussian"/>): the same seed gives the same bytes.</summary>
    public static float[] Random(WeightSpec spec, ulong seed)
    {
        double std = spec.Init switch
        {
            WeightInit.Linear => 1.0 / Math.Sqrt(spec.Shape[0]),
            WeightInit.Embedding => 0.02,
            _ => 0.1,
        };
        return SeededGaussian.Sample(spec.Name, spec.ElementCount, std, seed);
    }
}
