using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Generation;

/// <summary>
/// Who runs next. Submissions queue (bounded) from any thread; at each step boundary the
/// engine admits waiting sequences in arrival order while the KV pool can reserve their
/// worst case and the batch has room. The head of the queue is never skipped, so a long
/// request cannot starve behind a stream of short ones.
/// </summary>
internal sealed class Scheduler(KvCachePool pool, int maxQueueLength, int maxBatchSize)
{
    private readonly object _lock = new();
    private readonly LinkedList<Sequence> _waiting = new();

    /// <summary>Admitted sequences still reading their prompt (engine thread only).</summary>
    public List<Sequence> Prefilling { get; } = [];

    /// <summary>Sequences generating, in batch row order (engine thread only).</summary>
    public List<Sequence> Decoding { get; } = [];

    public int NumWaiting
    {
        get
        {
            lock (_lock)
            {
                return _waiting.Count;
            }
        }
    }

    public int NumRunning => Prefilling.Count + Decoding.Count;

    public bool HasWork => NumRunning > 0 || NumWaiting > 0;

    /// <summary>Queues all of <paramref name="sequences"/>, or none when the queue lacks room for all.</summary>
    public bool TryEnqueue(IReadOnlyList<Sequence> sequences)
    {
        lock (_lock)
        {
            if (_waiting.Count + sequences.Count > maxQueueLength)
            {
                return false;
            }

            foreach (Sequence sequence in sequences)
            {
                _waiting.AddLast(sequence);
            }

            return true;
        }
    }

    /// <summary>Moves waiting sequences to <see cref="Prefilling"/> while memory and batch room allow.</summary>
    public void Admit()
    {
        lock (_lock)
        {
            while (_waiting.First is { } head && NumRunning < maxBatchSize && pool.TryReserve(head.Value.ReservedBytes))
            {
                _waiting.RemoveFirst();
                head.Value.Status = SequenceStatus.Prefilling;
                head.Value.Trace.Admitted();
                Prefilling.Add(head.Value);
            }
        }
    }

    /// <summary>Removes cancelled sequences (or, at shutdown, all) that never started; the engine completes their streams.</summary>
    public void TakeCancelledWaiting(List<Sequence> cancelled, bool all = false)
    {
        lock (_lock)
        {
            for (LinkedListNode<Sequence>? node = _waiting.First; node is not null;)
            {
                LinkedListNode<Sequence>? next = node.Next;
                if (all || node.Value.IsCancelled)
                {
                    cancelled.Add(node.Value);
                    _waiting.Remove(node);
                }

                node = next;
            }
        }
    }
}
