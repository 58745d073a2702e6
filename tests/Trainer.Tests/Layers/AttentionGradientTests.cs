using Serving.Trainer.Layers;
using static Serving.Trainer.Tests.GradientCheck;

namespace Serving.Trainer.Tests.Layers;

public class AttentionGradientTests
{
    [Theory]
    [InlineData(int.MaxValue)] // global layer: every earlier key
    [InlineData(3)] // sliding layer: window shorter than the 7-token sequence
    public void QueryKeyValue_WithGroupedHeads(int window)
    {
        // 4 query heads on 2 KV heads, 2 sequences: exercises the group and batch offsets.
        var shape = new AttentionShape(Batch: 2, Sequence: 7, QueryHeads: 4, KvHeads: 2, HeadDim: 8, Scale: 0.35f, Window: window);
        int rows = shape.Batch * shape.Sequence;
        float[] q = Random(rows * shape.QueryWidth, 1), k = Random(rows * shape.KvWidth, 2), v = Random(rows * shape.KvWidth, 3);
        float[] r = Random(rows * shape.QueryWidth, 4);
        var probabilities = new float[shape.ProbabilityCount];
        double Objective()
        {
            var output = new float[r.Length];
            Attention.Forward(shape, q, k, v, new float[shape.ProbabilityCount], output);
            return Dot(output, r);
        }

        Attention.Forward(shape, q, k, v, probabilities, new float[r.Length]);
        float[] dq = new float[q.Length], dk = new float[k.Length], dv = new float[v.Length];
        Attention.Backward(shape, q, k, v, probabilities, r, dq, dk, dv, new float[shape.Sequence * shape.Sequence]);

        AssertMatches("dq", q, dq, Objective);
        AssertMatches("dk", k, dk, Objective);
        AssertMatches("dv", v, dv, Objective);
    }

    [Fact]
    public void SlidingWindow_HidesKeysOutsideTheWindow()
    {
        var shape = new AttentionShape(1, 6, 1, 1, 4, 0.5f, Window: 2);
        float[] q = Random(24, 5), k = Random(24, 6), v = Random(24, 7);
        var probabilities = new float[shape.ProbabilityCount];
        Attention.Forward(shape, q, k, v, probabilities, new float[24]);

        for (int t = 0; t < 6; t++)
        {
            for (int j = 0; j < 6; j++)
            {
                bool visible = j <= t && t - j < 2;
                Assert.True(visible == probabilities[t * 6 + j] > 0, $"query {t}, key {j}");
            }
        }
    }
}
