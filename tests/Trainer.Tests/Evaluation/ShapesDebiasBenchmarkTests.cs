using Serving.Trainer.Evaluation;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Tests.Evaluation;

/// <summary>
/// The benchmark on a hand-built embedder with a known confounder: one axis per attribute value,
/// and each shape word in a text that names no background leaning towards its home background
/// by 0.6, as a CLIP trained on the confounded world would. Images carry their true attributes.
/// </summary>
public class ShapesDebiasBenchmarkTests
{
    private static readonly string[] Words = [.. Scene.Words<Shape>(), .. Scene.Words<Colour>(), .. Scene.Words<Size>(), "water", "grass", "photo"];

    /// <summary>Extra axes that only images use: per-image noise, so nearest-neighbour ties break at random.</summary>
    private const int NoiseAxes = 8;

    [Fact]
    public void BothMethodsRemoveThePlantedSkewAndWringKeepsTheUnconsideredBias()
    {
        var benchmark = new ShapesDebiasBenchmark(EmbedTexts, EmbedImages, repeats: 8, seed: 1);
        IReadOnlyList<ShapesDebiasScores> rows = benchmark.Run();

        Assert.Equal(["none", "projection", "WRING", "projection", "WRING"], rows.Select(r => r.Method));
        ShapesDebiasScores none = rows[0];
        Assert.True(none.BackgroundMaxSkew > 0.5, $"planted skew {none.BackgroundMaxSkew}");
        Assert.Equal(1.0, none.ShapeAccuracy);
        foreach (ShapesDebiasScores row in rows.Skip(1))
        {
            Assert.True(row.BackgroundMaxSkew < none.BackgroundMaxSkew, $"{row.Method} ({row.ConceptFrom}): skew {row.BackgroundMaxSkew}");
            Assert.Equal(1.0, row.ShapeAccuracy);
            Assert.InRange(row.BackgroundAccuracy, 0.4, 0.6);
        }

        // Prompt groups are exact here (no lean once a background is named): both methods remove
        // the skew to sampling noise. The 100 reference images are a random draw of each
        // background, so their means carry some shape, colour and size too; WRING still removes
        // the skew, projection (which also removes the groups' shared direction) does not fully.
        Assert.All(rows.Skip(1).Take(2), row => Assert.True(row.BackgroundMaxSkew < 0.1, $"{row.Method} (prompts): skew {row.BackgroundMaxSkew}"));
        Assert.True(rows[4].BackgroundMaxSkew < 0.1, $"WRING (images): skew {rows[4].BackgroundMaxSkew}");

        Assert.True(Math.Abs(rows[2].SizeBiasChangePercent) < 1, $"WRING changed the size bias by {rows[2].SizeBiasChangePercent}%");
        Assert.True(rows[1].SizeBiasChangePercent > 1, $"projection changed the size bias by {rows[1].SizeBiasChangePercent}%");
    }

    private static float[][] EmbedTexts(IReadOnlyList<string> texts) => [.. texts.Select(text =>
    {
        var v = new float[Words.Length + NoiseAxes];
        bool namesBackground = text.Contains("water") || text.Contains("grass");
        foreach (string word in text.Split(' '))
        {
            int index = Array.IndexOf(Words, word);
            if (index >= 0)
            {
                v[index] += 1;
            }

            if (!namesBackground && Enum.TryParse(word, ignoreCase: true, out Shape shape))
            {
                v[Array.IndexOf(Words, Scene.Word(SceneSampler.HomeBackground(shape)))] += 0.6f;
            }
        }

        v[Words.Length - 1] += 1;
        return ZeroShot.Normalised(v);
    })];

    private static float[][] EmbedImages(IReadOnlyList<Scene> scenes) => [.. scenes.Select(scene =>
    {
        var v = new float[Words.Length + NoiseAxes];
        foreach (string word in (string[])[Scene.Word(scene.Shape), Scene.Word(scene.Colour), Scene.Word(scene.Size), Scene.Word(scene.Background)])
        {
            v[Array.IndexOf(Words, word)] += 1;
        }

        v[Words.Length - 1] += 1;
        var noise = new Random(scene.DetailSeed);
        for (int k = 0; k < NoiseAxes; k++)
        {
            v[Words.Length + k] = (float)(0.1 * (noise.NextDouble() - 0.5));
        }

        return ZeroShot.Normalised(v);
    })];
}
