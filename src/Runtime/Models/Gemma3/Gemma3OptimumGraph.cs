using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>The Gemma 3 decoder as Hugging Face Optimum exports it (being built).</summary>
public static class Gemma3OptimumGraph
{
    public static GraphProto Build(Gemma3Config config) =>
        throw new NotSupportedException($"the optimum style is not built yet ({config.NumHiddenLayers} layers asked)");
}
