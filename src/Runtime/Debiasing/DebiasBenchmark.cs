using System.Numerics.Tensors;

namespace Serving.Runtime.Debiasing;

/// <summary>One row of the evaluation: a method's scores on the synthetic benchmark.</summary>
public sealed record DebiasScores(
    string Method, double TargetMaxSkew, double TargetKl, double TargetBias,
    double UnconsideredBias, double UnconsideredChangePercent, double RecallAt10, double NormChangePercent);

/// <summary>
/// A synthetic CLIP-like embedding space with known structure, for comparing debiasing
/// methods. Orthonormal directions: a shared "photo" direction q, a target concept t (the one
/// debiased, e.g. gender), an unconsidered concept u (e.g. age), and one direction per
/// semantic class. Item = q·a + class·s + (±)t·b_t + (±)u·b_u + noise, normalised; the target
/// groups' text directions are normalise(q ± t), the unconsidered ones normalise(q ± u).
/// Each class query leans towards one target group, so undebiased retrieval is skewed.
/// </summary>
public sealed class DebiasBenchmark
{
    public const int Dimension = 64;
    private const int Classes = 10, ItemsPerClass = 1000, TopK = 100;
    private const double Shared = 0.6, ClassWeight = 1.0, TargetWeight = 0.35, UnconsideredWeight = 0.35, Noise = 0.2, QueryLean = 0.5;

    private readonly float[][] _items;
    private readonly int[] _classes, _targetGroups;
    private readonly float[][] _queries;

    public DebiasBenchmark(int seed = 1)
    {
        var random = new Random(seed);
        SharedDirection = Basis(0);
        Target = Basis(1);
        Unconsidered = Basis(2);
        TargetGroups = [Normalise(Add(SharedDirection, Target, 1)), Normalise(Add(SharedDirection, Target, -1))];
        UnconsideredGroups = [Normalise(Add(SharedDirection, Unconsidered, 1)), Normalise(Add(SharedDirection, Unconsidered, -1))];
        int n = Classes * ItemsPerClass;
        _items = new float[n][];
        _classes = new int[n];
        _targetGroups = new int[n];
        for (int i = 0; i < n; i++)
        {
            _classes[i] = i / ItemsPerClass;
            _targetGroups[i] = random.Next(2);
            var v = new float[Dimension];
            v[0] += (float)Shared;
            v[3 + _classes[i]] += (float)ClassWeight;
            v[1] += (float)(_targetGroups[i] == 0 ? TargetWeight : -TargetWeight);
            v[2] += (float)(random.Next(2) == 0 ? UnconsideredWeight : -UnconsideredWeight);
            for (int k = 0; k < Dimension; k++)
            {
                v[k] += (float)(Gaussian(random) * Noise);
            }

            _items[i] = Normalise(v);
        }

        // Class c's query leans to group 0 for even c and group 1 for odd c ("a photo of a doctor").
        _queries = [.. Enumerable.Range(0, Classes).Select(c =>
        {
            var q = new float[Dimension];
            q[0] = (float)Shared;
            q[3 + c] = (float)ClassWeight;
            q[1] = (float)(c % 2 == 0 ? QueryLean : -QueryLean);
            return Normalise(q);
        })];
    }

    /// <summary>The direction every photo shares (q): what projection removes along with the concept.</summary>
    public float[] SharedDirection { get; }

    public float[] Target { get; }

    public float[] Unconsidered { get; }

    public float[][] TargetGroups { get; }

    public float[][] UnconsideredGroups { get; }

    /// <summary>None, projection and WRING, each applied to items and queries alike.</summary>
    public IReadOnlyList<DebiasScores> Run()
    {
        var concept = ConceptSubspace.Create(TargetGroups);
        var projection = new DebiasTransform(DebiasMethod.Projection, [concept]);
        var wring = new DebiasTransform(DebiasMethod.Wring, [concept]);
        DebiasScores none = Score("none", v => v, baseline: null);
        return [none, Score("projection", v => projection.Apply(v), none), Score("WRING", v => wring.Apply(v), none)];
    }

    private DebiasScores Score(string method, Func<float[], float[]> transform, DebiasScores? baseline)
    {
        float[][] items = [.. _items.Select(transform)];
        Retrieval.VectorIndex index = Index(items);
        double skew = 0, kl = 0, recall = 0;
        double[] prior = [_targetGroups.Count(g => g == 0) / (double)_targetGroups.Length, _targetGroups.Count(g => g == 1) / (double)_targetGroups.Length];
        for (int c = 0; c < Classes; c++)
        {
            int[] top = TopIndices(index, transform(_queries[c]), TopK);
            int[] groups = [.. top.Select(i => _targetGroups[i])];
            skew += BiasMetrics.MaxSkew(groups, prior) / Classes;
            kl += BiasMetrics.KlToPrior(groups, prior) / Classes;
            recall += top.Take(10).Count(i => _classes[i] == c) / 10.0 / Classes;
        }

        double targetBias = items.Average(v => Math.Abs(BiasMetrics.GroupBias(v, TargetGroups[0], TargetGroups[1])));
        double unconsidered = items.Average(v => Math.Abs(BiasMetrics.GroupBias(v, UnconsideredGroups[0], UnconsideredGroups[1])));
        double normChange = items.Select((v, i) => Math.Abs(TensorPrimitives.Norm<float>(v) - TensorPrimitives.Norm<float>(_items[i]))).Average() * 100;
        double change = baseline is null ? 0 : (unconsidered / baseline.UnconsideredBias - 1) * 100;
        return new DebiasScores(method, skew, kl, targetBias, unconsidered, change, recall, normChange);
    }

    /// <summary>Cosine ranking, as CLIP retrieval does: the server's exact index over normalised rows.</summary>
    private static int[] TopIndices(Retrieval.VectorIndex index, float[] query, int k) =>
        [.. index.Search(Normalise(query), k).Select(hit => int.Parse(hit.Id, System.Globalization.CultureInfo.InvariantCulture))];

    private static Retrieval.VectorIndex Index(float[][] items)
    {
        var index = new Retrieval.VectorIndex(Dimension, items.Length);
        for (int i = 0; i < items.Length; i++)
        {
            index.Upsert(i.ToString(System.Globalization.CultureInfo.InvariantCulture), Normalise(items[i]));
        }

        return index;
    }

    private static float[] Basis(int axis)
    {
        var v = new float[Dimension];
        v[axis] = 1;
        return v;
    }

    private static float[] Add(float[] a, float[] b, float sign) => [.. a.Select((x, i) => x + sign * b[i])];

    private static float[] Normalise(float[] v)
    {
        float norm = TensorPrimitives.Norm<float>(v);
        return [.. v.Select(x => x / norm)];
    }

    private static double Gaussian(Random random) =>
        Math.Sqrt(-2.0 * Math.Log(1 - random.NextDouble())) * Math.Cos(2.0 * Math.PI * random.NextDouble());
}
