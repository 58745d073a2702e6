using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Generation;

/// <summary>
/// One sequence's share of a step: its next <see cref="Count"/> tokens (a prompt chunk, or the
/// last sampled token at decode), and whether the step samples its next token.
/// </summary>
internal readonly record struct ScheduledChunk(Sequence Sequence, int Count, bool Samples);

/// <summary>
/// What one step runs, in order: every chunk goes into one model call (sequences packed). The
/// list is the scheduler's and is valid until its next <see cref="Scheduler.Schedule"/>.
/// </summary>
internal readonly record struct StepPlan(IReadOnlyList<ScheduledChunk> Chunks, int NumTokens, int NumSampled)
{
    public bool IsEmpty => Chunks.Count == 0;
}

/// <summary>
/// Who runs next, and the only place a sequence's status changes. Submissions queue (bounded)
/// from any thread. Each step, running sequences come first, in admission order: a decoding one
/// feeds its last token, a prefilling one its next prompt chunk within the step's token budget.
/// Then waiting sequences are admitted in arrival order (the head is never skipped) while their
/// first chunk's blocks are free. When the pool runs out, the most recently admitted sequence is
/// preempted (its blocks freed, itself back at the head of the queue to be recomputed), as
/// vLLM v1 does; no request fails because another holds memory.
/// </summary>
internal sealed class Scheduler(KvCacheManager kv, EngineOptions options, bool prefixCaching, Func<Sequence, int> roomFor)
{
    private readonly object _lock = new();
    private readonly LinkedList<Sequence> _waiting = new();
    private readonly List<ScheduledChunk> _chunks = [];

    /// <summary>Admitted sequences, in admission order (engine thread only).</summary>
    public List<Sequence> Running { get; } = [];

    /// <summary>Preemptions so far (telemetry).</summary>
    public long NumPreemptions { get; private set; }

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

    public int NumRunning => Running.Count;

    public bool HasWork => NumRunning > 0 || NumWaiting > 0;

    /// <summary>Queues all of <paramref name="sequences"/>, or none when the queue lacks room for all.</summary>
    public bool TryEnqueue(IReadOnlyList<Sequence> sequences)
    {
        lock (_lock)
        {
            if (_waiting.Count + sequences.Count > options.MaxQueueLength)
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

    /// <summary>The next step: chunks of running sequences, then of newly admitted ones; blocks are allocated for every chunk.</summary>
    public StepPlan Schedule()
    {
        _chunks.Clear();
        int budget = options.MaxPrefillTokensPerStep, tokens = 0, sampled = 0;
        for (int i = 0; i < Running.Count; i++)
        {
            Sequence sequence = Running[i];
            int count = ChunkOf(sequence, budget);
            if (count > 0 && MakeRoom(sequence, count))
            {
                Add(sequence, count, ref budget, ref tokens, ref sampled);
            }
        }

        AdmitWaiting(ref budget, ref tokens, ref sampled);
        return new StepPlan(_chunks, tokens, sampled);
    }

    /// <summary>
    /// Tokens a running sequence feeds this step: 1 at decode; at prefill a chunk within the
    /// budget. A compressed cache at its cap is compressed first (<c>roomFor</c>), which may need
    /// free blocks to copy shared ones: the most recent sequences are preempted until it can.
    /// </summary>
    private int ChunkOf(Sequence sequence, int budget)
    {
        int pending = sequence.NumTokens - sequence.Length;
        int count = pending == 1 ? 1 : Math.Min(pending, budget);
        if (count == 0)
        {
            return 0;
        }

        int room;
        while ((room = roomFor(sequence)) < 0)
        {
            if (!PreemptFor(sequence))
            {
                return 0;
            }
        }

        return Math.Min(count, room);
    }

    /// <summary>Blocks for the sequence's next <paramref name="count"/> tokens, preempting the most recent others; false if it was preempted itself.</summary>
    private bool MakeRoom(Sequence sequence, int count)
    {
        while (!kv.TryGrow(sequence.Blocks, sequence.CacheLength + count, sequence.Length + count))
        {
            if (!PreemptFor(sequence))
            {
                return false;
            }
        }

        return true;
    }

    /// <summary>Preempts the most recently admitted sequence; false when that is <paramref name="sequence"/> itself.</summary>
    private bool PreemptFor(Sequence sequence)
    {
        if (Running.Count == 0)
        {
            return false;
        }

        Sequence victim = Running[^1];
        Preempt(victim);
        return victim != sequence;
    }

    private void Add(Sequence sequence, int count, ref int budget, ref int tokens, ref int sampled)
    {
        bool samples = sequence.Length + count == sequence.NumTokens;
        _chunks.Add(new ScheduledChunk(sequence, count, samples));
        budget -= sequence.NumTokens - sequence.Length > 1 ? count : 0;
        tokens += count;
        sampled += samples ? 1 : 0;
    }

    private void AdmitWaiting(ref int budget, ref int tokens, ref int sampled)
    {
        lock (_lock)
        {
            while (_waiting.First is { } head && Running.Count < options.MaxBatchSize && budget > 0)
            {
                Sequence sequence = head.Value;
                if (prefixCaching && sequence.Length == 0)
                {
                    if (WaitsForASibling(sequence))
                    {
                        return;
                    }

                    ResumeFromPrefix(sequence);
                }

                int count = ChunkOf(sequence, budget);
                if (count == 0 || !kv.TryGrow(sequence.Blocks, sequence.CacheLength + count, sequence.Length + count))
                {
                    return;  // shared prefix blocks stay referenced: the head keeps them until it runs
                }

                _waiting.RemoveFirst();
                sequence.Status = SequenceStatus.Running;
                if (sequence.Trace.AdmittedAt == 0)
                {
                    sequence.Trace.Admitted();
                }

                Running.Add(sequence);
                Add(sequence, count, ref budget, ref tokens, ref sampled);
            }
        }
    }

    /// <summary>
    /// Whether a running sequence is still computing a prompt that starts with the same full
    /// block: then this one waits for its blocks (committed after each step) and shares them,
    /// rather than computing the same prefix beside it — the n choices of one request, or clients
    /// sending one system prompt at once. The head is held, not skipped.
    /// </summary>
    private bool WaitsForASibling(Sequence sequence)
    {
        sequence.PrefixHashes ??= BlockHashes.Of((int[])sequence.Request.PromptIds, kv.BlockTokens, 0);
        if (sequence.PrefixHashes.Length == 0)
        {
            return false;
        }

        foreach (Sequence running in Running)
        {
            if (running.Length < running.PromptLength && running.IsCacheComplete && running.PrefixHashes is { Length: > 0 } hashes
                && hashes[0] == sequence.PrefixHashes[0])
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Starts the sequence from the longest cached run of its prompt's blocks, short of the last
    /// prompt token (whose logits the first sample needs) and short of its compression cap (so
    /// its first chunk needs no compression).
    /// </summary>
    private void ResumeFromPrefix(Sequence sequence)
    {
        sequence.PrefixHashes ??= BlockHashes.Of((int[])sequence.Request.PromptIds, kv.BlockTokens, 0);
        int matched = kv.MatchPrefix(sequence.Blocks, sequence.PrefixHashes, Math.Min(sequence.PromptLength - 1, sequence.CacheCap - 1));
        sequence.Length = sequence.CacheLength = sequence.CachedTokens = matched;
    }

    /// <summary>Frees the sequence's blocks and puts it back at the head of the queue; its tokens are recomputed when it runs again.</summary>
    private void Preempt(Sequence sequence)
    {
        Running.Remove(sequence);
        kv.Free(sequence.Blocks);
        sequence.Preempted();
        NumPreemptions++;
        lock (_lock)
        {
            _waiting.AddFirst(sequence);
        }
    }

    /// <summary>After the step: the chunks' tokens are in the cache; full prompt blocks over a complete cache become shareable.</summary>
    public void Advance(StepPlan plan)
    {
        foreach (ScheduledChunk chunk in plan.Chunks)
        {
            Sequence sequence = chunk.Sequence;
            bool complete = sequence.IsCacheComplete;
            sequence.Advance(chunk.Count);
            if (prefixCaching && complete && sequence.Status == SequenceStatus.Running)
            {
                sequence.PrefixHashes ??= BlockHashes.Of((int[])sequence.Request.PromptIds, kv.BlockTokens, 0);
                kv.CommitFullBlocks(sequence.Blocks, sequence.PrefixHashes, Math.Min(sequence.Length, sequence.PromptLength) / kv.BlockTokens);
            }
        }
    }

    /// <summary>Ends a running sequence: out of the running list, its blocks back to the pool.</summary>
    public void Finish(Sequence sequence)
    {
        Running.Remove(sequence);
        kv.Free(sequence.Blocks);
        sequence.Status = SequenceStatus.Finished;
    }

    /// <summary>Removes cancelled sequences (or, at shutdown, all) that are not running; the engine completes their streams.</summary>
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
                    kv.Free(node.Value.Blocks);
                }

                node = next;
            }
        }
    }
}
