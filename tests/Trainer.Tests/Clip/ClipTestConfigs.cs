using Serving.Runtime.Models.Clip;

namespace Serving.Trainer.Tests.Clip;

internal static class ClipTestConfigs
{
    /// <summary>
    /// Two layers of width 16 per tower, 16² images of 8² patches (4 patches + class token),
    /// 12 text positions, the smallest vocabulary the CLIP builder accepts plus a margin.
    /// </summary>
    public static ClipConfig Tiny { get; } = new(
        Text: new ClipTowerConfig(16, 32, 2, 2),
        Vision: new ClipTowerConfig(16, 32, 2, 2),
        VocabSize: 600, MaxPositionEmbeddings: 12, ImageSize: 16, PatchSize: 8, ProjectionDim: 8,
        BosTokenId: 598, EosTokenId: 599);

    /// <summary>Rows of random tokens, each ended by the end token at a different place, then end-token padding.</summary>
    public static int[] Captions(int batch, int length, int seed)
    {
        var random = new Random(seed);
        var ids = new int[batch * length];
        for (int b = 0; b < batch; b++)
        {
            int end = 2 + (b % (length - 2));
            ids[b * length] = Tiny.BosTokenId;
            for (int t = 1; t < length; t++)
            {
                ids[b * length + t] = t < end ? random.Next(Tiny.BosTokenId) : Tiny.EosTokenId;
            }
        }

        return ids;
    }
}
