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

    /// <summary>
    /// What <see cref="ExpInto"/> writes for the largest value (Vector.Exp(0) is 1.0000001 on
    /// x64, not 1): min-p compares against it.
    /// </summary>
    public static float ExpOfZero { get; } = Vector.Exp(Vector<float>.Zero)[0];

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
    /// the tail included, goes through Vector.Exp so that equal inputs give equal outputs.
    /// source and destination may be the same span.
    /// </summary>
    public static double ExpInto(ReadOnlySpan<float> source, Span<float> destination, float shift, float scale)
    {
        Vector<float> shiftLanes = new(shift);
        Vector<float> scaleLanes = new(scale);
        Vector<double> sum = Vector<double>.Zero;
        int i = 0;
        for (; i <= source.Length - s_width; i += s_width)
        {
            Vector<float> exp = Vector.Exp((new Vector<float>(source[i..]) - shiftLanes) * scaleLanes);
            exp.CopyTo(destination[i..]);
            Vector.Widen(exp, out Vector<double> low, out Vector<double> high);
            sum += low + high;
        }

        double total = Vector.Sum(sum);
        int rest = source.Length - i;
        if (rest > 0)
        {
            Span<float> tail = stackalloc float[s_width];
            tail.Fill(shift);
            source[i..].CopyTo(tail);
            Vector<float> exp = Vector.Exp((new Vector<float>(tail) - shiftLanes) * scaleLanes);
            for (int lane = 0; lane < rest; lane++)
            {
                destination[i + lane] = exp[lane];
                total += exp[lane];
            }
        }

        return total;
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
