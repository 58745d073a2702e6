using Serving.Runtime.Models.Clip;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Clip;

/// <summary>Architectures for <c>serving train-clip --config</c>.</summary>
public static class ClipTrainingPresets
{
    /// <summary>
    /// shapes-clip: 64² images of 8² patches (64 + 1 tokens), two layers of width 64 per tower,
    /// 32 text positions (the longest caption is 14 tokens). Sized so a run of a few thousand
    /// steps at batch 128 fits in ~40 min on one BLAS thread.
    /// </summary>
    public static ClipConfig Shapes { get; } = new(
        Text: new ClipTowerConfig(64, 256, 4, 2),
        Vision: new ClipTowerConfig(64, 256, 4, 2),
        VocabSize: 1024, MaxPositionEmbeddings: 32, ImageSize: Scene.ImageSize, PatchSize: 8, ProjectionDim: 32,
        BosTokenId: 1022, EosTokenId: 1023);

    /// <summary>For tests: one layer of width 32 per tower on the same 64² images.</summary>
    public static ClipConfig Tiny { get; } = new(
        Text: new ClipTowerConfig(32, 64, 2, 1),
        Vision: new ClipTowerConfig(32, 64, 2, 1),
        VocabSize: 1024, MaxPositionEmbeddings: 32, ImageSize: Scene.ImageSize, PatchSize: 16, ProjectionDim: 16,
        BosTokenId: 1022, EosTokenId: 1023);

    public static IReadOnlyList<string> Names { get; } = ["shapes", "tiny"];

    public static ClipConfig? Find(string name) => name switch
    {
        "shapes" => Shapes,
        "tiny" => Tiny,
        _ => null,
    };
}
