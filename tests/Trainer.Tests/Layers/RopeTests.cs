using Serving.Trainer.Layers;
using static Serving.Trainer.Tests.GradientCheck;

namespace Serving.Trainer.Tests.Layers;

public class RopeTests
{
    [Fact]
    public void InverseIsTheBackwardPass()
    {
        // L = ⟨rope(x), r⟩ is linear in x, so dL/dx = ropeᵀ(r) = rope⁻¹(r).
        var rope = new Rope(headDim: 8, ropeBase: 10_000, maxPositions: 32);
        int[] positions = [0, 5, 31, 2];
        float[] x = Random(4 * 2 * 8, 1), r = Random(x.Length, 2);
        double Objective()
        {
            float[] rotated = (float[])x.Clone();
            rope.Apply(rotated, 2, positions, inverse: false);
            return Dot(rotated, r);
        }

        float[] gradient = (float[])r.Clone();
        rope.Apply(gradient, 2, positions, inverse: true);

        AssertMatches("dx", x, gradient, Objective);
    }

    [Fact]
    public void RotatesBandFWithBandFPlusHalf()
    {
        // Band 0 turns by position·1 rad: x[0] = 1 at position 2 becomes (cos 2, sin 2) in (x[0], x[2]).
        var rope = new Rope(headDim: 4, ropeBase: 10_000, maxPositions: 4);
        float[] x = [1f, 0f, 0f, 0f];
        rope.Apply(x, 1, [2], inverse: false);

        Assert.Equal(Math.Cos(2), x[0], 6);
        Assert.Equal(Math.Sin(2), x[2], 6);
        Assert.Equal(0f, x[1]);
    }
}
