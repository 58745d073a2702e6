namespace Serving.Runtime.Models.Gemma3;

/// <summary>Named architectures for <c>serving models create --preset</c>.</summary>
public static class Gemma3Presets
{
    /// <summary>
    /// 214,208 parameters: two query heads per KV head (GQA), alternating local/global
    /// layers and a 16-token window, so tests exercise every code path in milliseconds.
    /// </summary>
    public static Gemma3Config Tiny { get; } = new()
    {
        VocabSize = 1024,
        HiddenSize = 64,
        IntermediateSize = 128,
        NumHiddenLayers = 4,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 2,
        HeadDim = 16,
        SlidingWindow = 16,
        SlidingWindowPattern = 2,
        QueryPreAttnScalar = 16,
        MaxPositionEmbeddings = 2048,
    };

    /// <summary>The shapes of google/gemma-3-270m (REFERENCE §1), random weights.</summary>
    public static Gemma3Config Gemma3_270M { get; } = new()
    {
        VocabSize = 262_144,
        HiddenSize = 640,
        IntermediateSize = 2048,
        NumHiddenLayers = 18,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 1,
        HeadDim = 256,
        SlidingWindow = 512,
        SlidingWindowPattern = 6,
        QueryPreAttnScalar = 256,
    };

    /// <summary>The shapes of google/gemma-3-1b (REFERENCE §1), random weights.</summary>
    public static Gemma3Config Gemma3_1B { get; } = new()
    {
        VocabSize = 262_144,
        HiddenSize = 1152,
        IntermediateSize = 6912,
        NumHiddenLayers = 26,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 1,
        HeadDim = 256,
        SlidingWindow = 512,
        SlidingWindowPattern = 6,
        QueryPreAttnScalar = 256,
    };

    public static IReadOnlyList<string> Names { get; } = ["tiny", "gemma3-270m", "gemma3-1b"];

    public static Gemma3Config? Find(string name) => name switch
    {
        "tiny" => Tiny,
        "gemma3-270m" => Gemma3_270M,
        "gemma3-1b" => Gemma3_1B,
        _ => null,
    };
}
