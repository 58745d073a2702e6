using System.Numerics.Tensors;

namespace Serving.Runtime.Retrieval;

/// <summary>One search result: the item's id and its dot product with the query (cosine for unit vectors).</summary>
public readonly record struct Hit(string Id, float Score);

/// <summary>
/// Exact nearest-neighbour search over unit vectors: rows in one contiguous array, SIMD dot
/// products (TensorPrimitives.Dot) and a size-k min-heap, so a search costs n·d multiply-adds
/// and O(n log k) heap work with no per-row allocation. Upserts overwrite a row in place;
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

    /// <summary>The <paramref name="topK"/> best rows that pass <paramref name="filter"/> (by id), best first.</summary>
    public IReadOnlyList<Hit> Search(ReadOnlySpan<float> query, int topK, Func<string, bool>? filter = null)
    {
        CheckDimension(query.Length);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(topK);
        var heap = new PriorityQueue<int, float>(topK + 1);
        _lock.EnterReadLock();
        try
        {
            for (int row = 0; row < _ids.Count; row++)
            {
                if (filter is not null && !filter(_ids[row]))
                {
                    continue;
                }

                float score = TensorPrimitives.Dot(query, _vectors.AsSpan(row * Dimension, Dimension));
                if (heap.Count < topK)
                {
                    heap.Enqueue(row, score);
                }
                else if (heap.TryPeek(out _, out float worst) && score > worst)
                {
                    heap.DequeueEnqueue(row, score);
                }
            }

            var hits = new Hit[heap.Count];
            for (int i = hits.Length - 1; i >= 0; i--)
            {
                heap.TryDequeue(out int row, out float score);
                hits[i] = new Hit(_ids[row], score);
            }

            return hits;
        }
        finally
        {
            _lock.ExitReadLock();
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
