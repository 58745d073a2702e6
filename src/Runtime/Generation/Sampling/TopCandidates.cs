namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// The k largest values of a vocabulary-sized span with their ids, best first; ties go to the
/// lower id. A bounded min-heap: one pass over the span, and after the heap fills most values
/// are rejected by a single comparison with the worst kept (for k = 1024 of 262,144 random
/// logits, about k·ln(V/k) ≈ 5,700 insertions). Buffers are sized once, for k.
/// </summary>
internal sealed class TopCandidates
{
    private readonly float[] _values;
    private readonly int[] _ids;
    private int _count;

    public TopCandidates(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _values = new float[capacity];
        _ids = new int[capacity];
    }

    public int Capacity => _values.Length;

    public int Count => _count;

    /// <summary>The kept values, best first (valid until the next <see cref="SelectFrom"/>).</summary>
    public ReadOnlySpan<float> Values => _values.AsSpan(0, _count);

    /// <summary>The kept ids, in the order of <see cref="Values"/>.</summary>
    public ReadOnlySpan<int> Ids => _ids.AsSpan(0, _count);

    /// <summary>Keeps the <see cref="Capacity"/> largest of <paramref name="values"/>, then orders them best first.</summary>
    public void SelectFrom(ReadOnlySpan<float> values)
    {
        _count = 0;
        int i = 0;
        for (; i < values.Length && _count < _values.Length; i++)
        {
            Push(values[i], i);
        }

        // Ids arrive in increasing order, so a value equal to the worst kept loses the tie.
        float worst = _count > 0 ? _values[0] : 0;
        for (; i < values.Length; i++)
        {
            if (values[i] > worst)
            {
                _values[0] = values[i];
                _ids[0] = i;
                SiftDown(0, _count);
                worst = _values[0];
            }
        }

        SortBestFirst();
    }

    private void Push(float value, int id)
    {
        int child = _count++;
        while (child > 0)
        {
            int parent = (child - 1) / 2;
            if (!IsWorse(value, id, _values[parent], _ids[parent]))
            {
                break;
            }

            _values[child] = _values[parent];
            _ids[child] = _ids[parent];
            child = parent;
        }

        _values[child] = value;
        _ids[child] = id;
    }

    /// <summary>Restores the heap below <paramref name="root"/>: the worst entry of [0, count) at the root.</summary>
    private void SiftDown(int root, int count)
    {
        float value = _values[root];
        int id = _ids[root];
        int parent = root;
        while (true)
        {
            int child = (2 * parent) + 1;
            if (child >= count)
            {
                break;
            }

            if (child + 1 < count && IsWorse(_values[child + 1], _ids[child + 1], _values[child], _ids[child]))
            {
                child++;
            }

            if (!IsWorse(_values[child], _ids[child], value, id))
            {
                break;
            }

            _values[parent] = _values[child];
            _ids[parent] = _ids[child];
            parent = child;
        }

        _values[parent] = value;
        _ids[parent] = id;
    }

    /// <summary>Heapsort: moving the worst entry to the back each time leaves the best first.</summary>
    private void SortBestFirst()
    {
        for (int end = _count - 1; end > 0; end--)
        {
            (_values[0], _values[end]) = (_values[end], _values[0]);
            (_ids[0], _ids[end]) = (_ids[end], _ids[0]);
            SiftDown(0, end);
        }
    }

    private static bool IsWorse(float value, int id, float otherValue, int otherId) =>
        value < otherValue || (value == otherValue && id > otherId);
}
