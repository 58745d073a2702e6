using System.Numerics.Tensors;
using Serving.Runtime.Debiasing;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Evaluation;

/// <summary>
/// One method's scores on the balanced shapes test set. Background is the debiased concept;
/// size is the unconsidered one (planted colour ↔ size correlation in training).
/// </summary>
/// <param name="BackgroundMaxSkew">MaxSkew@k of background among the top k images of each shape query, mean over shapes.</param>
/// <param name="BackgroundKl">KL(retrieved backgrounds ‖ prior) among those top k, mean over shapes.</param>
/// <param name="ShapeAccuracy">Zero-shot shape accuracy ("a photo of a circle", …).</param>
/// <param name="WorstGroupShapeAccuracy">The lowest shape accuracy over the 8 (shape, background) groups.</param>
/// <param name="RecallAt10">Fraction of the top 10 images of each shape query that show that shape, mean over shapes.</param>
/// <param name="BackgroundAccuracy">Zero-shot background accuracy: 50% is a concept no longer readable by its prompts.</param>
/// <param name="SizeMaxSkew">MaxSkew@k of size among the top k images of each colour query, mean over colours.</param>
/// <param name="SizeSkewChangePercent">Change of <paramref name="SizeMaxSkew"/> against no debiasing.</param>
/// <param name="SizeBias">Mean |cos(v, small) − cos(v, large)| of the images, the size directions from prompts.</param>
/// <param name="SizeBiasChangePercent">Change of <paramref name="SizeBias"/> against no debiasing.</param>
/// <param name="WaterShareByShape">Share of water images among the top k of each shape query (circle, square, triangle, star): which way each skew points.</param>
public sealed record ShapesDebiasScores(
    string Method, string ConceptFrom, double BackgroundMaxSkew, double BackgroundKl, double ShapeAccuracy, double WorstGroupShapeAccuracy,
    double RecallAt10, double BackgroundAccuracy, double SizeMaxSkew, double SizeSkewChangePercent, double SizeBias, double SizeBiasChangePercent,
    IReadOnlyList<double> WaterShareByShape);

/// <summary>
/// WRING against projection and no debiasing on a CLIP trained on the shapes world
/// (REFERENCE §2), with the concept "background" defined by prompts ("a photo of a circle on
/// the water", averaged over shapes) and, separately, by reference images (the k = 100
/// images of a separate balanced set nearest to each group's prompts, as the server's
/// <c>nearest_images</c> does). Every transform is applied to images and queries alike.
/// </summary>
public sealed class ShapesDebiasBenchmark
{
    public const int TopK = 100;
    public const int ReferenceImages = 100;

    private readonly Func<IReadOnlyList<string>, float[][]> _embedTexts;
    private readonly IReadOnlyList<Scene> _scenes;
    private readonly float[][] _images;
    private readonly float[][] _reference;

    /// <param name="embedTexts">Unit-length caption embeddings.</param>
    /// <param name="embedImages">Unit-length image embeddings of rendered scenes.</param>
    /// <param name="repeats">Copies of each of the 128 attribute combinations in the test set.</param>
    public ShapesDebiasBenchmark(Func<IReadOnlyList<string>, float[][]> embedTexts, Func<IReadOnlyList<Scene>, float[][]> embedImages, int repeats = 8, int seed = 11)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(repeats, 1);
        _embedTexts = embedTexts;
        _scenes = SceneSampler.Balanced(repeats, seed);
        _images = embedImages(_scenes);
        _reference = embedImages(SceneSampler.Balanced(repeats: 4, seed: seed + 1));
    }

    public int TestImages => _scenes.Count;

    public IReadOnlyList<ShapesDebiasScores> Run()
    {
        float[][] prompts = ZeroShot.BackgroundClasses(_embedTexts);
        float[][] fromImages = [.. prompts.Select(p => ZeroShot.Normalised(Mean(Nearest(_reference, p, ReferenceImages))))];
        ShapesDebiasScores none = Score("none", "-", v => v, baseline: null);
        var rows = new List<ShapesDebiasScores> { none };
        foreach (var (from, groups) in new[] { ("prompts", prompts), ("images", fromImages) })
        {
            var concept = ConceptSubspace.Create(groups);
            foreach (var (name, method) in new[] { ("projection", DebiasMethod.Projection), ("WRING", DebiasMethod.Wring) })
            {
                var transform = new DebiasTransform(method, [concept]);
                rows.Add(Score(name, from, v => ZeroShot.Normalised(transform.Apply(v)), none));
            }
        }

        return rows;
    }

    private ShapesDebiasScores Score(string method, string from, Func<float[], float[]> transform, ShapesDebiasScores? baseline)
    {
        float[][] images = [.. _images.Select(transform)];
        float[][] shapeQueries = [.. ZeroShot.ShapeClasses(_embedTexts).Select(transform)];
        double[] backgroundPrior = Prior(_scenes.Select(s => (int)s.Background), 2);
        double skew = 0, kl = 0, recall = 0;
        var waterShare = new double[shapeQueries.Length];
        for (int shape = 0; shape < shapeQueries.Length; shape++)
        {
            int[] top = Top(images, shapeQueries[shape], TopK);
            int[] backgrounds = [.. top.Select(i => (int)_scenes[i].Background)];
            waterShare[shape] = backgrounds.Count(b => b == (int)Background.Water) / (double)backgrounds.Length;
            skew += BiasMetrics.MaxSkew(backgrounds, backgroundPrior) / shapeQueries.Length;
            kl += BiasMetrics.KlToPrior(backgrounds, backgroundPrior) / shapeQueries.Length;
            recall += top.Take(10).Count(i => (int)_scenes[i].Shape == shape) / 10.0 / shapeQueries.Length;
        }

        int[] predicted = ZeroShot.Classify(images, shapeQueries);
        double accuracy = Fraction(Enumerable.Range(0, _scenes.Count), i => predicted[i] == (int)_scenes[i].Shape);
        double worst = _scenes.Select((s, i) => (Group: (s.Shape, s.Background), i)).GroupBy(x => x.Group)
            .Min(g => Fraction(g.Select(x => x.i), i => predicted[i] == (int)_scenes[i].Shape));
        double backgroundAccuracy = ZeroShot.Accuracy(images, [.. ZeroShot.BackgroundClasses(_embedTexts).Select(transform)], [.. _scenes.Select(s => (int)s.Background)]);

        float[][] colourQueries = [.. ZeroShot.ColourClasses(_embedTexts).Select(transform)];
        double[] sizePrior = Prior(_scenes.Select(s => (int)s.Size), 2);
        double sizeSkew = colourQueries.Average(q => BiasMetrics.MaxSkew([.. Top(images, q, TopK).Select(i => (int)_scenes[i].Size)], sizePrior));
        float[][] sizes = ZeroShot.SizeClasses(_embedTexts);
        double sizeBias = images.Average(v => Math.Abs(BiasMetrics.GroupBias(v, sizes[0], sizes[1])));
        return new ShapesDebiasScores(method, from, skew, kl, accuracy, worst, recall, backgroundAccuracy,
            sizeSkew, Change(sizeSkew, baseline?.SizeMaxSkew), sizeBias, Change(sizeBias, baseline?.SizeBias), waterShare);
    }

    private static double Change(double value, double? baseline) => baseline is { } b ? (value / b - 1) * 100 : 0;

    private static int[] Top(float[][] items, float[] query, int k) =>
        [.. Enumerable.Range(0, items.Length).OrderByDescending(i => TensorPrimitives.Dot(items[i], query)).ThenBy(i => i).Take(k)];

    private static float[][] Nearest(float[][] items, float[] query, int k) => [.. Top(items, query, k).Select(i => items[i])];

    private static double[] Prior(IEnumerable<int> groups, int count)
    {
        int[] all = [.. groups];
        return [.. Enumerable.Range(0, count).Select(g => all.Count(x => x == g) / (double)all.Length)];
    }

    private static double Fraction(IEnumerable<int> indices, Func<int, bool> predicate)
    {
        int[] all = [.. indices];
        return all.Count(predicate) / (double)all.Length;
    }

    private static float[] Mean(float[][] rows)
    {
        var mean = new float[rows[0].Length];
        foreach (float[] row in rows)
        {
            TensorPrimitives.Add(mean, row, mean);
        }

        return mean;
    }
}
