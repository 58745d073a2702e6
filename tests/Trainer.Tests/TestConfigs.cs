using Serving.Runtime.Models.Gemma3;

namespace Serving.Trainer.Tests;

internal static class TestConfigs
{
    /// <summary>
    /// The runtime's tiny preset (GQA 4:2, alternating sliding/global layers) with a 4-token
    /// window, so sequences of 8+ tokens exercise the window in the sliding layers.
    /// </summary>
    public static Gemma3Config Tiny { get; } = Gemma3Presets.Tiny with { SlidingWindow = 4 };

    /// <summary>A short fixed pattern repeated: a model that learns anything learns this.</summary>
    public static int[] RepeatedTokens(int patternLength, int repeats, int vocab, int seed)
    {
        var random = new Random(seed);
        int[] pattern = [.. Enumerable.Range(0, patternLength).Select(_ => random.Next(10, vocab))];
        return [.. Enumerable.Repeat(pattern, repeats).SelectMany(p => p)];
    }
}
