namespace Serving.Runtime.Generation.Sampling;

/// <summary>Quickselect (Hoare partition, median-of-three pivot) over distinct integer keys.</summary>
internal static class KeySelection
{
    /// <summary>Reorders <paramref name="keys"/> so that its <paramref name="count"/> smallest come first (in any order).</summary>
    public static void KeepSmallest(Span<ulong> keys, int count)
    {
        // Invariant: keys before low ≤ keys in [low, high] ≤ keys after high; the boundary
        // between positions count − 1 and count lies in [low, high].
        int low = 0;
        int high = keys.Length - 1;
        while (low < high)
        {
            int split = Partition(keys, low, high);
            if (split == count - 1)
            {
                return;
            }

            if (count - 1 < split)
            {
                high = split;
            }
            else
            {
                low = split + 1;
            }
        }
    }

    /// <summary>Hoare partition of [low, high]: returns j with every key in [low, j] ≤ every key in [j + 1, high].</summary>
    private static int Partition(Span<ulong> keys, int low, int high)
    {
        int middle = low + ((high - low) / 2);
        ulong pivot = MedianOfThree(keys[low], keys[middle], keys[high]);
        int i = low - 1;
        int j = high + 1;
        while (true)
        {
            do
            {
                i++;
            }
            while (keys[i] < pivot);

            do
            {
                j--;
            }
            while (keys[j] > pivot);

            if (i >= j)
            {
                return j;
            }

            (keys[i], keys[j]) = (keys[j], keys[i]);
        }
    }

    private static ulong MedianOfThree(ulong a, ulong b, ulong c) =>
        Math.Max(Math.Min(a, b), Math.Min(Math.Max(a, b), c));
}
