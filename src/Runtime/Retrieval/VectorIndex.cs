using System.Numerics.Tensors;

namespace Serving.Runtime.Retrieval;

/// <summary>One search result: the item's id and its dot product with the query (cosine for unit vectors).</summary>
public readonly record struct Hit(string Id, float Score);

/// <summary>
/// Exact nearest-neighbour search over unit vectors: rows in one contiguous array, SIMD dot
/// products (TensorPrimitives.Dot) and a size-k min-heap, so a search costs n·d multiply-adds
/// and O(n log k) heap work with no per-row allocation, split over the cores for large n. Upserts overwrite a row in place;
/// deletes move the last row into the hole. Readers and writers are serialised by a
/// reader-writer lock: many searches at once, one writer.
/// </summary>
public sealed class VectorIndex
{
    private readonly ReaderWriterLockSlim _lock = new();
    private readonly Dictionary<string, int> _rows = new(StringComparer.Ordinal);
    private readonly List<string> _ids = [];
    private float[] _vectors;

    public VectorIndex(int dimension, int capacity = 1024)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(dimension);
        Dimension = dimension;
        _vectors = new float[Math.Max(1, capacity) * dimension];
    }

    public int Dimension { get; }

    public int Count
    {
        get
        {
            _lock.EnterReadLock();
            try
            {
                return _ids.Count;
            }
            finally
            {
                _lock.ExitReadLock();
            }
        }
    }

    public void Upsert(string id, ReadOnlySpan<float> vector)
    {
        CheckDimension(vector.Length);
        _lock.EnterWriteLock();
        try
        {
            if (!_rows.TryGetValue(id, out int row))
            {
                row = _ids.Count;
                if ((row + 1) * Dimension > _vectors.Length)
                {
                    Array.Resize(ref _vectors, _vectors.Length * 2);
                }

                _rows[id] = row;
                _ids.Add(id);
            }

            vector.CopyTo(_vectors.AsSpan(row * Dimension, Dimension));
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    public bool Remove(string id)
    {
        _lock.EnterWriteLock();
        try
        {
            if (!_rows.Remove(id, out int row))
            {
                return false;
            }

            int last = _ids.Count - 1;
            if (row != last)
            {
                _vectors.AsSpan(last * Dimension, Dimension).CopyTo(_vectors.AsSpan(row * Dimension, Dimension));
                _ids[row] = _ids[last];
                _rows[_ids[row]] = row;
            }

            _ids.RemoveAt(last);
            return true;
        }
        finally
        {
            _lock.ExitWriteLock();
        }
    }

    /// <summary>
    /// The <paramref name="topK"/> best rows that pass <paramref name="filter"/> (by id), best
    /// first. Above <see cref="RowsPerTask"/> rows the scan is split over the cores, each part
    /// with its own heap, merged at the end: a scan is memory-bound (2 KB per 512-d row), and
    /// one core does not saturate the memory bus. <paramref name="filter"/> must be thread-safe.
    /// </summary>
    public IReadOnlyList<Hit> Search(ReadOnlySpan<float> query, int topK, Func<string, bool>? filter = null)
    {
        CheckDimension(query.Length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        float[] q = query.ToArray();
        _lock.EnterReadLock();
        try
        {
            int parts = Math.Clamp(_ids.Count / RowsPerTask, 1, Environment.ProcessorCount);
            var heaps = new PriorityQueue<int, float>[parts];
            int rowsPerPart = (_ids.Count + parts - 1) / parts;
            Parallel.For(0, parts, part =>
                heaps[part] = Scan(q, part * rowsPerPart, Math.Min(_ids.Count, (part + 1) * rowsPerPart), topK, filter));
            var merged = heaps[0];
            for (int part = 1; part < parts; part++)
            {
                while (heaps[part].TryDequeue(out int row, out float score))
                {
                    Offer(merged, row, score, topK);
                }
            }

            var hits = new Hit[merged.Count];
            for (int i = hits.Length - 1; i >= 0; i--)
            {
                merged.TryDequeue(out int row, out float score);
                hits[i] = new Hit(_ids[row], score);
            }

            return hits;
        }
        finally
        {
            _lock.ExitReadLock();
        }
    }

    /// <summary>Rows one task scans at least: 64k × 512-d is 128 MB, ~10 ms, well above the cost of a task.</summary>
    private const int RowsPerTask = 1 << 16;

    /// <summary>The top k of rows [start, end) as a min-heap (worst on top).</summary>
    private PriorityQueue<int, float> Scan(float[] query, int start, int end, int topK, Func<string, bool>? filter)
    {
        var heap = new PriorityQueue<int, float>(topK + 1);
        for (int row = start; row < end; row++)
        {
            if (filter is null || filter(_ids[row]))
            {
                Offer(heap, row, TensorPrimitives.Dot(query, _vectors.AsSpan(row * Dimension, Dimension)), topK);
            }
        }

        return heap;
    }

    private static void Offer(PriorityQueue<int, float> heap, int row, float score, int topK)
    {
        if (heap.Count < topK)
        {
            heap.Enqueue(row, score);
        }
        else if (heap.TryPeek(out _, out float worst) && score > worst)
        {
            heap.DequeueEnqueue(row, score);
        }
    }

    private void CheckDimension(int length)
    {
        if (length != Dimension)
        {
            throw new ArgumentException($"the vector has {length} values; this index holds {Dimension}-dimensional vectors");
        }
    }
}
