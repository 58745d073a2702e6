namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The KV byte budget of one model. A sequence reserves, at admission, the bytes its longest
/// possible cache needs (prompt + max tokens, sliding layers capped at their window), so a
/// running sequence never has to be pre-empted; it releases them when it finishes or is
/// cancelled. Thread-safe: the engine reserves and releases, metrics read.
/// </summary>
public sealed class KvCachePool(long capacityBytes)
{
    private long _usedBytes;
    private int _numReservations;

    public long CapacityBytes { get; } = capacityBytes > 0 ? capacityBytes : throw new ArgumentOutOfRangeException(nameof(capacityBytes));

    public long UsedBytes => Interlocked.Read(ref _usedBytes);

    public int NumReservations => Volatile.Read(ref _numReservations);

    /// <summary>Fraction of the budget reserved, 0 to 1 (vLLM's kv_cache_usage_perc).</summary>
    public double Usage => (double)UsedBytes / CapacityBytes;

    /// <summary>Whether a request of <paramref name="bytes"/> could ever fit, even into an empty pool.</summary>
    public bool CanEverFit(long bytes) => bytes <= CapacityBytes;

    public bool TryReserve(long bytes)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        while (true)
        {
            long used = UsedBytes;
            if (used + bytes > CapacityBytes)
            {
                return false;
            }

            if (Interlocked.CompareExchange(ref _usedBytes, used + bytes, used) == used)
            {
                Interlocked.Increment(ref _numReservations);
                return true;
            }
        }
    }

    public void Release(long bytes)
    {
        long after = Interlocked.Add(ref _usedBytes, -bytes);
        Interlocked.Decrement(ref _numReservations);
        if (after < 0)
        {
            throw new InvalidOperationException($"the KV pool released {bytes} bytes more than were reserved");
        }
    }
}
