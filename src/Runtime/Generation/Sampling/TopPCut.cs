namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// Top-p over the whole vocabulary without sorting it, for when the ~1,024 best tokens hold
/// less than p of the mass (flat distributions). The kept set is every value above a cut plus
/// the lowest-id values equal to it — exactly what a full best-first sort (ties to the lower
/// id) would keep. The cut is found by bisecting the float's bit pattern (non-negative floats
/// order like their bits): ~31 vectorized passes, ~3 ms at 262,144 tokens against ~20 ms
/// for a sort, and no vocabulary-sized index buffer.
/// </summary>
internal static class TopPCut
{
    /// <summary>
    /// For non-negative <paramref name="weights"/> and 0 &lt; target ≤ their sum, the smallest kept
    /// value and how many of the values equal to it (lowest ids first) are kept, so that the
    /// best-first prefix is the shortest one whose mass reaches <paramref name="target"/>.
    /// <paramref name="upperBound"/> is a value known to be ≥ the cut.
    /// </summary>
    public static (float Cut, int TiedKept) Find(ReadOnlySpan<float> weights, double target, float upperBound)
    {
        int low = 0;
        int high = BitConverter.SingleToInt32Bits(upperBound);
        while (low < high)
        {
            int middle = low + ((high - low + 1) / 2);
            if (ProbabilityMath.MassAbove(weights, BitConverter.Int32BitsToSingle(middle), strictly: false) >= target)
            {
                low = middle;
            }
            else
            {
                high = middle - 1;
            }
        }

        float cut = BitConverter.Int32BitsToSingle(low);
        double mass = ProbabilityMath.MassAbove(weights, cut, strictly: true);
        int tiedKept = 0;
        for (int i = 0; i < weights.Length && (tiedKept == 0 || mass < target); i++)
        {
            if (weights[i] == cut)
            {
                mass += weights[i];
                tiedKept++;
            }
        }

        return (cut, Math.Max(tiedKept, 1));
    }
}
