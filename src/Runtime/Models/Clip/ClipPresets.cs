namespace Serving.Runtime.Models.Clip;

/// <summary>Named CLIP architectures for <c>serving models create --preset</c>.</summary>
public static class ClipPresets
{
    /// <summary>
    /// About 0.2 M parameters: two layers of width 32 per tower, but the real 224² input and
    /// 32² patches, so the preprocessing and the vision graph run at production shapes.
    /// </summary>
    public static ClipConfig Tiny { get; } = new(
        Text: new ClipTowerConfig(32, 64, 2, 2),
        Vision: new ClipTowerConfig(32, 64, 2, 2),
        VocabSize: 1024, MaxPositionEmbeddings: 77, ImageSize: 224, PatchSize: 32, ProjectionDim: 16,
        BosTokenId: 1022, EosTokenId: 1023);

    /// <summary>The shapes of openai/clip-vit-base-patch32 (151 M parameters), random weights.</summary>
    public static ClipConfig VitB32 { get; } = new(
        Text: new ClipTowerConfig(512, 2048, 8, 12),
        Vision: new ClipTowerConfig(768, 3072, 12, 12),
        VocabSize: 49408, MaxPositionEmbeddings: 77, ImageSize: 224, PatchSize: 32, ProjectionDim: 512,
        BosTokenId: 49406, EosTokenId: 49407);

    public static IReadOnlyList<string> Names { get; } = ["clip-tiny", "clip-vit-b-32"];

    public static ClipConfig? Find(string name) => name switch
    {
        "clip-tiny" => Tiny,
        "clip-vit-b-32" => VitB32,
        _ => null,
    };
}
