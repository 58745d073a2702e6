using System.Numerics.Tensors;
using Serving.Runtime.Debiasing;

namespace Serving.Runtime.Tests.Debiasing;

public sealed class DebiasTransformTests
{
    private const int D = 16;

    private static float[] Random(Random random) => [.. Enumerable.Range(0, D).Select(_ => (float)(random.NextDouble() * 2 - 1))];

    private static (ConceptSubspace Concept, float[][] Groups) Concept(Random random, int groups = 2)
    {
        float[][] directions = [.. Enumerable.Range(0, groups).Select(_ => Random(random))];
        return (ConceptSubspace.Create(directions), directions);
    }

    [Fact]
    public void WringKeepsTheNormAndLeavesEqualCosineToEveryGroup()
    {
        var random = new Random(4);
        foreach (int groups in (int[])[2, 3])
        {
            var (concept, directions) = Concept(random, groups);
            var wring = new DebiasTransform(DebiasMethod.Wring, [concept]);
            for (int trial = 0; trial < 20; trial++)
            {
                float[] v = Random(random), moved = wring.Apply(v);
                Assert.Equal(TensorPrimitives.Norm<float>(v), TensorPrimitives.Norm<float>(moved), 4);
                double[] cosines = [.. directions.Select(c => (double)TensorPrimitives.CosineSimilarity(moved, c))];
                Assert.All(cosines, cos => Assert.Equal(cosines[0], cos, 4));
            }
        }
    }

    [Fact]
    public void WringLeavesDirectionsOutsideTheConceptAlone()
    {
        var random = new Random(5);
        var (concept, _) = Concept(random);
        // A random direction minus its part in the concept's span is orthogonal to it.
        float[] orthogonal = Random(random);
        var projection = new double[D];
        concept.Project(orthogonal, projection);
        float[] outside = [.. orthogonal.Select((x, i) => (float)(x - projection[i]))];
        float[] v = Random(random), moved = new DebiasTransform(DebiasMethod.Wring, [concept]).Apply(v);
        Assert.Equal(TensorPrimitives.Dot(v, outside), TensorPrimitives.Dot(moved, outside), 4);
    }

    [Fact]
    public void ProjectionRemovesTheConceptAndShrinksTheVector()
    {
        var random = new Random(6);
        var (concept, directions) = Concept(random);
        float[] v = Random(random), moved = new DebiasTransform(DebiasMethod.Projection, [concept]).Apply(v);
        Assert.All(directions, c => Assert.Equal(0, TensorPrimitives.Dot(moved, c), 4));
        Assert.True(TensorPrimitives.Norm<float>(moved) < TensorPrimitives.Norm<float>(v));
    }

    [Fact]
    public void ComposedConceptsAreEachDebiased()
    {
        // Two concepts on disjoint axes (0–1 and 2–3): after both, v has equal cosine to the groups of each.
        float[] Axis(params (int Index, float Value)[] entries)
        {
            var v = new float[D];
            foreach (var (index, value) in entries)
            {
                v[index] = value;
            }

            return v;
        }

        float[][] first = [Axis((0, 1), (1, 0.5f)), Axis((0, 1), (1, -0.5f))], second = [Axis((2, 1), (3, 0.3f)), Axis((2, 1), (3, -0.3f))];
        var transform = new DebiasTransform(DebiasMethod.Wring, [ConceptSubspace.Create(first), ConceptSubspace.Create(second)]);
        float[] moved = transform.Apply(Random(new Random(8)));
        foreach (float[][] groups in (float[][][])[first, second])
        {
            Assert.Equal(TensorPrimitives.CosineSimilarity(moved, groups[0]), TensorPrimitives.CosineSimilarity(moved, groups[1]), 4);
        }
    }

    [Fact]
    public void DependentGroupsAreRefused()
    {
        float[] c = Random(new Random(7));
        Assert.Throws<ArgumentException>(() => ConceptSubspace.Create([c, [.. c.Select(x => 2 * x)]]));
        Assert.Throws<ArgumentException>(() => ConceptSubspace.Create([c]));
    }

    [Fact]
    public void OnTheSyntheticBenchmarkWringMatchesProjectionWithoutAmplifyingTheOtherConcept()
    {
        var rows = new DebiasBenchmark(seed: 2).Run().ToDictionary(r => r.Method);
        Assert.True(rows["none"].TargetMaxSkew > 0.5, $"none: {rows["none"]}");
        Assert.True(rows["projection"].TargetMaxSkew < 0.15 && rows["WRING"].TargetMaxSkew < 0.15, $"{rows["projection"]} {rows["WRING"]}");
        Assert.True(rows["projection"].UnconsideredChangePercent > 3, $"projection: {rows["projection"]}");
        Assert.InRange(rows["WRING"].UnconsideredChangePercent, -0.5, 0.5);
        Assert.InRange(rows["WRING"].NormChangePercent, 0, 0.01);
        Assert.True(rows["WRING"].RecallAt10 >= rows["none"].RecallAt10 - 0.05);
    }
}
