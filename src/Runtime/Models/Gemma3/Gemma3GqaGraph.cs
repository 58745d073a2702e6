using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>The Gemma 3 decoder with GroupQueryAttention (being built).</summary>
public static class Gemma3GqaGraph
{
    public static GraphProto Build(Gemma3Config config, Gemma3ExportStyle style) =>
        throw new NotSupportedException($"the {style.Name()} style is not built yet ({config.NumHiddenLayers} layers asked)");

    public static IEnumerable<GeneratedWeight> PackedWeights(Gemma3Config config, IReadOnlyList<WeightSpec> specs, Func<WeightSpec, float[]> weights) =>
        throw new NotSupportedException($"packed weights are not built yet ({specs.Count} specs, {config.NumHiddenLayers} layers, {weights})");
}
