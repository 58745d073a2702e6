using System.Numerics;

namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// Vectorized passes over a vocabulary-sized span (262,144 floats for Gemma 3): with AVX2 each
/// pass handles 8 values per instruction, so the softmax's exp pass costs ~0.1 ms, not ~1 ms.
/// Sums are accumulated in double to keep 262,144 terms accurate to ~1e-12 relative.
/// </summary>
internal static class ProbabilityMath
{
    private static readonly int s_width = Vector<float>.Count;

    public static float Max(ReadOnlySpan<float> values)
    {
        float max = float.NegativeInfinity;
        int i = 0;
        if (values.Length >= s_width)
        {
            Vector<float> lanes = new(values);
            for (i = s_width; i <= values.Length - s_width; i += s_width)
            {
                lanes = Vector.Max(lanes, new Vector<float>(values[i..]));
            }

            for (int lane = 0; lane < s_width; lane++)
            {
                max = Math.Max(max, lanes[lane]);
            }
        }

        for (; i < values.Length; i++)
        {
            max = Math.Max(max, values[i]);
        }

        return max;
    }

    /// <summary>The first index of the largest value (ties go to the lower id, as PyTorch's argmax).</summary>
    public static int ArgMax(ReadOnlySpan<float> values) => values.IndexOf(Max(values));

    /// <summary>
    /// destination[i] = exp((source[i] − shift) × scale), returning their sum. Every element,
    /// the tail included, goes through <see cref="Exp"/> so that equal inputs give equal outputs.
    /// source and destination may be the same span.
    /// </summary>
    public static double ExpInto(ReadOnlySpan<float> source, Span<float> destination, float shift, float scale)
    {
        Vector<float> shiftLanes = new(shift);
        Vector<float> scaleLanes = new(scale);
        Vector<double> sum = Vector<double>.Zero;
        int i = 0;
        while (i <= source.Length - s_width)
        {
            // 32 float additions per lane before widening: ~1e-6 relative, and the widening
            // (which cost as much as the exp) runs 32× less often.
            Vector<float> block = Vector<float>.Zero;
            int blockEnd = Math.Min(i + (32 * s_width), source.Length - s_width + 1);
            for (; i < blockEnd; i += s_width)
            {
                Vector<float> exp = Exp((new Vector<float>(source[i..]) - shiftLanes) * scaleLanes);
                exp.CopyTo(destination[i..]);
                block += exp;
            }

            Vector.Widen(block, out Vector<double> low, out Vector<double> high);
            sum += low + high;
        }

        double total = Vector.Sum(sum);
        int rest = source.Length - i;
        if (rest > 0)
        {
            Span<float> tail = stackalloc float[s_width];
            tail.Fill(shift);
            source[i..].CopyTo(tail);
            Vector<float> exp = Exp((new Vector<float>(tail) - shiftLanes) * scaleLanes);
            for (int lane = 0; lane < rest; lane++)
            {
                destination[i + lane] = exp[lane];
                total += exp[lane];
            }
        }

        return total;
    }

    /// <summary>
    /// exp for floats (Cephes expf: range reduction by ln 2, degree-6 polynomial; ~1 ulp).
    /// Vector.Exp(Vector&lt;float&gt;) computes in double and costs ~4 ns per value, which at
    /// 262,144 logits and two softmaxes per token was most of the sampler's time; this is ~4×
    /// faster. exp(0) is exactly 1, and inputs below ln(float.MinNormal) give 0.
    /// </summary>
    public static Vector<float> Exp(Vector<float> x)
    {
        Vector<int> underflows = Vector.LessThan(x, new Vector<float>(-87.33654f));
        x = Vector.Min(Vector.Max(x, new Vector<float>(-87.33654f)), new Vector<float>(88.37626f));
        Vector<float> n = Vector.Floor((x * new Vector<float>(1.44269504088896341f)) + new Vector<float>(0.5f));
        Vector<float> r = x - (n * new Vector<float>(0.693359375f)) - (n * new Vector<float>(-2.12194440e-4f));
        Vector<float> poly = new(1.9875691500e-4f);
        poly = (poly * r) + new Vector<float>(1.3981999507e-3f);
        poly = (poly * r) + new Vector<float>(8.3334519073e-3f);
        poly = (poly * r) + new Vector<float>(4.1665795894e-2f);
        poly = (poly * r) + new Vector<float>(1.6666665459e-1f);
        poly = (poly * r) + new Vector<float>(5.0000001201e-1f);
        poly = (poly * r * r) + r + Vector<float>.One;
        Vector<int> twoToTheN = Vector.ShiftLeft(Vector.ConvertToInt32(n) + new Vector<int>(127), 23);
        return Vector.ConditionalSelect(underflows, Vector<float>.Zero, poly * Vector.AsVectorSingle(twoToTheN));
    }

    /// <summary>The sum of the values ≥ threshold (strictly greater when <paramref name="strictly"/>).</summary>
    public static double MassAbove(ReadOnlySpan<float> values, float threshold, bool strictly)
    {
        Vector<float> thresholdLanes = new(threshold);
        Vector<double> sum = Vector<double>.Zero;
        int i = 0;
        for (; i <= values.Length - s_width; i += s_width)
        {
            Vector<float> lanes = new(values[i..]);
            Vector<int> keep = strictly ? Vector.GreaterThan(lanes, thresholdLanes) : Vector.GreaterThanOrEqual(lanes, thresholdLanes);
            Vector.Widen(Vector.ConditionalSelect(keep, lanes, Vector<float>.Zero), out Vector<double> low, out Vector<double> high);
            sum += low + high;
        }

        double total = Vector.Sum(sum);
        for (; i < values.Length; i++)
        {
            if (values[i] > threshold || (!strictly && values[i] == threshold))
            {
                total += values[i];
            }
        }

        return total;
    }
}
