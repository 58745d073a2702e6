using Serving.Runtime.Models.Gemma3;

namespace Serving.Trainer.Training;

/// <summary>Architectures for <c>serving train --config</c>.</summary>
public static class TrainingPresets
{
    /// <summary>The runtime's 214 K-parameter tiny preset: a few steps per second, for tests and smoke runs.</summary>
    public static Gemma3Config Tiny => Gemma3Presets.Tiny;

    /// <summary>
    /// The kjv-gemma3 architecture of issue 8: 4.40 M parameters (1.05 M in the tied 4,096 × 256
    /// embedding), 6 layers of which every third is global, window 128 inside a 512 context,
    /// 4 query heads on 1 KV head of 64. The MLP is 2 × hidden (512), not Gemma's ~4–6 ×: at 768
    /// the float32 weights alone were 22.3 MB and the committed folder may hold 20 MB; at 512
    /// they are 17.6 MB, plus ~1.5 MB of tokenizer files. ~1,100 tokens/s on 2 shared cores at
    /// 5.6 M parameters, so an hour is ~4 M tokens: several epochs of the Bible's ~1–2 M.
    /// </summary>
    public static Gemma3Config Kjv { get; } = new()
    {
        VocabSize = 4096,
        HiddenSize = 256,
        IntermediateSize = 512,
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
