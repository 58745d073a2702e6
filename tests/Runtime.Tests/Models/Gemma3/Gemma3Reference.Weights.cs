using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

// The weight names and shapes the oracle reads, their checks, and random weights for tests.
public sealed partial class Gemma3Reference
{
    /// <summary>Every weight the model needs, with its row-major shape.</summary>
    public static IEnumerable<(string Name, int[] Shape)> WeightShapes(Gemma3Config config)
    {
        int h = config.HiddenSize, q = config.NumAttentionHeads * config.HeadDim;
        int kv = config.NumKeyValueHeads * config.HeadDim, inter = config.IntermediateSize;
        yield return ("model.embed_tokens.weight", [config.VocabSize, h]);
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string p = $"model.layers.{i}.";
            yield return (p + "input_layernorm.weight", [h]);
            yield return (p + "post_attention_layernorm.weight", [h]);
            yield return (p + "pre_feedforward_layernorm.weight", [h]);
            yield return (p + "post_feedforward_layernorm.weight", [h]);
            yield return (p + "self_attn.q_proj.weight", [h, q]);
            yield return (p + "self_attn.k_proj.weight", [h, kv]);
            yield return (p + "self_attn.v_proj.weight", [h, kv]);
            yield return (p + "self_attn.o_proj.weight", [q, h]);
            yield return (p + "self_attn.q_norm.weight", [config.HeadDim]);
            yield return (p + "self_attn.k_norm.weight", [config.HeadDim]);
            yield return (p + "mlp.gate_proj.weight", [h, inter]);
            yield return (p + "mlp.up_proj.weight", [h, inter]);
            yield return (p + "mlp.down_proj.weight", [inter, h]);
        }

        yield return ("model.norm.weight", [h]);
    }

    /// <summary>
    /// Deterministic random weights: linear N(0, 1/fan_in), embedding N(0, 1/H),
    /// norm weights N(0, 0.1²) so that (1 + w) stays near 1 but is not exactly 1.
    /// </summary>
    public static Dictionary<string, float[]> RandomWeights(Gemma3Config config, int seed)
    {
        var random = new Random(seed);
        var weights = new Dictionary<string, float[]>();
        foreach ((string name, int[] shape) in WeightShapes(config))
        {
            double std = name.EndsWith("norm.weight", StringComparison.Ordinal) ? 0.1
                : name == "model.embed_tokens.weight" ? 1.0 / Math.Sqrt(config.HiddenSize)
                : 1.0 / Math.Sqrt(shape[0]);
            var values = new float[shape.Aggregate(1, (a, b) => a * b)];
            for (int i = 0; i < values.Length; i++)
            {
                values[i] = (float)(std * Gaussian(random));
            }

            weights[name] = values;
        }

        return weights;
    }

    private static double Gaussian(Random random)
    {
        // Box–Muller; 1 − U keeps the logarithm's argument in (0, 1].
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }

    private static void CheckWeights(Gemma3Config config, IReadOnlyDictionary<string, float[]> weights)
    {
        foreach ((string name, int[] shape) in WeightShapes(config))
        {
            if (!weights.TryGetValue(name, out float[]? values))
            {
                throw new ArgumentException($"weight '{name}' is missing", nameof(weights));
            }

            long expected = shape.Aggregate(1L, (a, b) => a * b);
            if (values.Length != expected)
            {
                throw new ArgumentException(
                    $"weight '{name}' has {values.Length} values, expected {expected} ([{string.Join(", ", shape)}])",
                    nameof(weights));
            }
        }
    }
}
