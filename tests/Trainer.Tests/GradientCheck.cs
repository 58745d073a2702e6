namespace Serving.Trainer.Tests;

/// <summary>
/// Finite-difference checks in float32: one random direction u ~ N(0, I) per tensor, comparing
/// (L(x + εu) − L(x − εu)) / 2ε with ⟨∇L, u⟩. A direction sums thousands of elements, so the
/// signal stands far above float32 rounding (~1e-7 relative) where single elements would not.
/// The error is measured against max(|⟨∇L, u⟩|, ‖∇L‖), ‖∇L‖ being the standard deviation of
/// ⟨∇L, u⟩: a direction that happens to cancel (4e-5 against ‖∇L‖ = 0.17 in one MLP gate)
/// would otherwise compare rounding noise with itself.
/// </summary>
internal static class GradientCheck
{
    public static float[] Random(int length, int seed, double std = 1.0)
    {
        var random = new Random(seed);
        var values = new float[length];
        for (int i = 0; i < length; i++)
        {
            values[i] = (float)(std * Gaussian(random));
        }

        return values;
    }

    /// <summary>Σ aᵢ·bᵢ in float64: the scalar objective L = ⟨output, r⟩ whose gradient is r.</summary>
    public static double Dot(ReadOnlySpan<float> a, ReadOnlySpan<float> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += (double)a[i] * b[i];
        }

        return sum;
    }

    /// <param name="x">The tensor to perturb (restored afterwards).</param>
    /// <param name="gradient">The analytic dL/dx.</param>
    /// <param name="objective">Recomputes L from scratch, reading <paramref name="x"/>.</param>
    public static void AssertMatches(string what, float[] x, float[] gradient, Func<double> objective, double epsilon = 1e-2, double tolerance = 1e-2, int seed = 99)
    {
        float[] direction = Random(x.Length, seed);
        float[] original = (float[])x.Clone();
        double expected = Dot(gradient, direction);
        double plus = Evaluate(x, original, direction, epsilon, objective);
        double minus = Evaluate(x, original, direction, -epsilon, objective);
        original.CopyTo(x, 0);
        double numeric = (plus - minus) / (2 * epsilon);
        double scale = Math.Max(Math.Abs(expected), Math.Max(Math.Sqrt(Dot(gradient, gradient)), 1e-6));
        double error = Math.Abs(numeric - expected) / scale;
        Assert.True(error < tolerance, $"{what}: analytic {expected:G6}, finite difference {numeric:G6}, relative error {error:E2}");
    }

    private static double Evaluate(float[] x, float[] original, float[] direction, double step, Func<double> objective)
    {
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = (float)(original[i] + step * direction[i]);
        }

        return objective();
    }

    private static double Gaussian(Random random)
    {
        double u1 = 1.0 - random.NextDouble(), u2 = random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}
