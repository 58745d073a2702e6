using Serving.Runtime.Models.Gemma3;

namespace Serving.Trainer.Training;

/// <summary>Architectures for <c>serving train --config</c>.</summary>
public static class TrainingPresets
{
    /// <summary>The runtime's 214 K-parameter tiny preset: a few steps per second, for tests and smoke runs.</summary>
    public static Gemma3Config Tiny => Gemma3Presets.Tiny;

    /// <summary>
    /// The kjv-gemma3 architecture of issue 8: 5.58 M parameters (1.05 M in the tied 4,096 × 256
    /// embedding), 6 layers of which every third is global, window 128 inside a 512 context,
    /// 4 query heads on 1 KV head of 64. Sized so ~1 h on 2 cores covers about one epoch of the
    /// Bible (≈ 1 M tokens at a 4 K vocabulary).
    /// </summary>
    public static Gemma3Config Kjv { get; } = new()
    {
        VocabSize = 4096,
        HiddenSize = 256,
        IntermediateSize = 768,
        NumHiddenLayers = 6,
        NumAttentionHeads = 4,
        NumKeyValueHeads = 1,
        HeadDim = 64,
        SlidingWindow = 128,
        SlidingWindowPattern = 3,
        QueryPreAttnScalar = 64,
        MaxPositionEmbeddings = 512,
    };

    public static IReadOnlyList<string> Names { get; } = ["tiny", "kjv"];

    public static Gemma3Config? Find(string name) => name switch
    {
        "tiny" => Tiny,
        "kjv" => Kjv,
        _ => null,
    };
}
