using System.Numerics;

namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// The k largest values of a vocabulary-sized span with their ids, best first; ties go to the
/// lower id. Each candidate is one ulong key (value in the high half, id in the low half)
/// whose ascending order is best first, so selection and sorting compare integers. One pass
/// appends the values above a floor to a 4k buffer and quickselects it back to k when it
/// fills; vectors with nothing above the floor are skipped whole. For large k the floor
/// starts at an estimate from 1,024 strided samples: without it, k = 1,024 of 262,144 logits
/// took ~8 compactions and ~0.5 ms, with it one or two. Buffers are sized once.
/// </summary>
internal sealed class TopCandidates
{
    private const int SampleCount = 1024;

    private readonly ulong[] _keys;
    private readonly float[] _values;
    private readonly int[] _ids;
    private ulong[] _samples = [];
    private int _count;

    public TopCandidates(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _keys = new ulong[4 * capacity];
        _values = new float[capacity];
        _ids = new int[capacity];
    }

    public int Capacity => _values.Length;

    /// <summary>The kept values, best first (valid until the next <see cref="SelectFrom"/>).</summary>
    public ReadOnlySpan<float> Values => _values.AsSpan(0, _count);

    /// <summary>The kept ids, in the order of <see cref="Values"/>.</summary>
    public ReadOnlySpan<int> Ids => _ids.AsSpan(0, _count);

    /// <summary>
    /// Keeps the <see cref="Capacity"/> largest of <paramref name="values"/> (−∞ never kept),
    /// then orders them best first.
    /// </summary>
    public void SelectFrom(ReadOnlySpan<float> values)
    {
        float floor = EstimateFloor(values);
        int count = Collect(values, floor);
        if (count < Capacity && floor != float.NegativeInfinity)
        {
            // The estimate overshot the k-th largest (about 1 in 10^5 at k = 1,024): start over.
            count = Collect(values, float.NegativeInfinity);
        }

        Finish(count);
    }

    /// <summary>Appends every value above <paramref name="floor"/> that can still be among the best; returns how many are held.</summary>
    private int Collect(ReadOnlySpan<float> values, float floor)
    {
        int count = 0;
        float worst = floor;
        Vector<float> worstLanes = new(worst);
        int width = Vector<float>.Count;
        for (int i = 0; i < values.Length;)
        {
            if (i <= values.Length - width && !Vector.GreaterThanAny(new Vector<float>(values[i..]), worstLanes))
            {
                i += width;
                continue;
            }

            // Ids only grow, so a value equal to the worst kept loses the tie: strictly greater.
            for (int end = Math.Min(i + width, values.Length); i < end; i++)
            {
                if (values[i] > worst)
                {
                    _keys[count++] = ToKey(values[i], i);
                    if (count == _keys.Length)
                    {
                        worst = Compact(ref count);
                        worstLanes = new Vector<float>(worst);
                    }
                }
            }
        }

        return count;
    }

    /// <summary>
    /// A value just below the estimated 1·k-to-4·k-th largest, from strided samples: the number
    /// of samples above the true k-th largest is about Poisson(λ = k·samples/V), and the floor is
    /// the (λ + 4√λ + 4)-th best sample. −∞ when k is too small for samples to help.
    /// </summary>
    private float EstimateFloor(ReadOnlySpan<float> values)
    {
        int samples = Math.Min(SampleCount, values.Length);
        double lambda = (double)Capacity * samples / values.Length;
        if (values.Length <= _keys.Length || lambda < 1)
        {
            return float.NegativeInfinity;
        }

        if (_samples.Length != samples)
        {
            _samples = new ulong[samples];
        }

        int stride = values.Length / samples;
        for (int s = 0; s < samples; s++)
        {
            _samples[s] = ToKey(values[s * stride], s * stride);
        }

        int rank = (int)Math.Ceiling(lambda + (4 * Math.Sqrt(lambda)) + 4);
        KeySelection.KeepSmallest(_samples, rank);
        return MathF.BitDecrement(ValueOf(MaxOf(_samples.AsSpan(0, rank))));
    }

    /// <summary>Keeps the best <see cref="Capacity"/> of the full buffer; returns the worst value kept.</summary>
    private float Compact(ref int count)
    {
        KeySelection.KeepSmallest(_keys.AsSpan(0, count), Capacity);
        count = Capacity;
        return ValueOf(MaxOf(_keys.AsSpan(0, count)));
    }

    private void Finish(int count)
    {
        Span<ulong> keys = _keys.AsSpan(0, count);
        if (count > Capacity)
        {
            KeySelection.KeepSmallest(keys, Capacity);
            keys = keys[..Capacity];
        }

        keys.Sort();
        _count = keys.Length;
        for (int i = 0; i < keys.Length; i++)
        {
            _values[i] = ValueOf(keys[i]);
            _ids[i] = (int)(uint)keys[i];
        }
    }

    private static ulong MaxOf(ReadOnlySpan<ulong> keys)
    {
        ulong max = 0;
        foreach (ulong key in keys)
        {
            max = Math.Max(max, key);
        }

        return max;
    }

    /// <summary>Larger values and then lower ids give smaller keys.</summary>
    private static ulong ToKey(float value, int id)
    {
        uint bits = BitConverter.SingleToUInt32Bits(value);
        uint ascending = (bits & 0x8000_0000) != 0 ? ~bits : bits | 0x8000_0000;
        return ((ulong)~ascending << 32) | (uint)id;
    }

    private static float ValueOf(ulong key)
    {
        uint ascending = ~(uint)(key >> 32);
        uint bits = (ascending & 0x8000_0000) != 0 ? ascending & 0x7FFF_FFFF : ~ascending;
        return BitConverter.UInt32BitsToSingle(bits);
    }
}
