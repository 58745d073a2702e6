namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The one owner of a model's KV memory: a pool of fixed-size blocks allocated once, at start,
/// from the budget, and never grown. A block holds one layer's keys and values for
/// <see cref="BlockTokens"/> slots (<c>[2, kv_heads, BlockTokens, head_dim]</c>, the layout the
/// PagedAttention op reads in place). Sequences hold per-layer block tables; blocks are
/// reference-counted so that prompt prefixes are shared (prefix caching), and freed blocks that
/// hold a registered prefix stay cached until the pool needs them (least recently used first).
/// Engine thread only, except the counts, which metrics read.
/// </summary>
public sealed class KvCacheManager : IDisposable
{
    private readonly KvLayout _layout;
    private readonly int[] _refs;
    private readonly UInt128[] _hashOfBlock;
    private readonly bool[] _hasHash;
    private readonly Stack<int> _free = new();
    private readonly LinkedList<int> _cachedFree = new();
    private readonly LinkedListNode<int>?[] _cachedNode;
    private readonly Dictionary<(UInt128 Hash, int Layer), int> _cached = [];
    private int _numUsed;

    public KvCacheManager(KvLayout layout, int blockTokens, long budgetBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _layout = layout;
        BlockTokens = blockTokens;
        BlockBytes = 2L * layout.SlotBytes * blockTokens;
        long blocks = budgetBytes / BlockBytes;
        if (blocks < layout.Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(budgetBytes),
                $"a KV budget of {budgetBytes} bytes holds {blocks} blocks of {BlockBytes} bytes, fewer than the {layout.Layers} one token needs (one per layer)");
        }

        NumBlocks = (int)Math.Min(blocks, int.MaxValue / 2);
        Pool = new NativeBuffer(NumBlocks * BlockBytes);
        _refs = new int[NumBlocks];
        _hashOfBlock = new UInt128[NumBlocks];
        _hasHash = new bool[NumBlocks];
        _cachedNode = new LinkedListNode<int>?[NumBlocks];
        for (int block = NumBlocks - 1; block >= 0; block--)
        {
            _free.Push(block);
        }
    }

    public KvLayout Layout => _layout;
    public int BlockTokens { get; }
    public long BlockBytes { get; }
    public int NumBlocks { get; }

    /// <summary>The pool: <see cref="NumBlocks"/> blocks of <see cref="BlockBytes"/>, 64-byte aligned.</summary>
    public NativeBuffer Pool { get; }

    /// <summary>Bytes allocated for KV: the whole pool, from start to end.</summary>
    public long AllocatedBytes => Pool.Bytes;

    /// <summary>Blocks referenced by running sequences.</summary>
    public int NumUsedBlocks => Volatile.Read(ref _numUsed);

    /// <summary>Blocks a sequence may take now: free ones and cached ones no sequence references.</summary>
    public int NumFreeBlocks => NumBlocks - NumUsedBlocks;

    /// <summary>Blocks holding a registered prefix (referenced or not).</summary>
    public int NumCachedBlocks => _cached.Count;

    /// <summary>Fraction of the blocks referenced, 0 to 1 (vLLM's kv_cache_usage_perc).</summary>
    public double Usage => (double)NumUsedBlocks / NumBlocks;

    public SequenceBlocks CreateSequence() => new(_layout.Layers);

    /// <summary>Logical blocks a layer needs for <paramref name="slots"/> slots.</summary>
    public int BlocksFor(int slots) => (slots + BlockTokens - 1) / BlockTokens;

    /// <summary>
    /// New blocks that growing to these lengths takes. A sliding layer keeps the blocks its next
    /// call reads (the window before its current length) and every block the call writes.
    /// </summary>
    public int BlocksToGrow(SequenceBlocks sequence, int globalSlots, int slidingSlots)
    {
        int needed = 0, first = FirstLiveBlock(sequence.SlidingSlots);
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            bool sliding = _layout.IsTrimmed[layer];
            int from = Math.Max(sequence.Tables[layer].Count, sliding ? first : 0);
            needed += Math.Max(0, BlocksFor(sliding ? slidingSlots : globalSlots) - from);
        }

        return needed;
    }

    /// <summary>
    /// Gives every layer blocks for its slots (global layers <paramref name="globalSlots"/>, sliding
    /// ones <paramref name="slidingSlots"/>), all or none. Sliding blocks that left the window
    /// before this growth (no query of the coming call reads them) go back to the pool first.
    /// </summary>
    public bool TryGrow(SequenceBlocks sequence, int globalSlots, int slidingSlots)
    {
        int first = FirstLiveBlock(sequence.SlidingSlots);
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            List<int> table = sequence.Tables[layer];
            for (int logical = 0; _layout.IsTrimmed[layer] && logical < Math.Min(first, table.Count); logical++)
            {
                Release(table[logical]);
                table[logical] = -1;
            }
        }

        if (BlocksToGrow(sequence, globalSlots, slidingSlots) > NumFreeBlocks)
        {
            return false;
        }

        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            bool sliding = _layout.IsTrimmed[layer];
            List<int> table = sequence.Tables[layer];
            while (table.Count < BlocksFor(sliding ? slidingSlots : globalSlots))
            {
                table.Add(sliding && table.Count < first ? -1 : Take());
            }
        }

        sequence.SlidingSlots = Math.Max(sequence.SlidingSlots, slidingSlots);
        return true;
    }

    /// <summary>After the global layers were compacted to <paramref name="globalSlots"/> slots: their trailing blocks go back.</summary>
    public void Shrink(SequenceBlocks sequence, int globalSlots)
    {
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            List<int> table = sequence.Tables[layer];
            while (!_layout.IsTrimmed[layer] && table.Count > BlocksFor(globalSlots))
            {
                Release(table[^1]);
                table.RemoveAt(table.Count - 1);
            }
        }
    }

    /// <summary>Returns every block of the sequence (finish, cancel, preemption); the tables become empty.</summary>
    public void Free(SequenceBlocks sequence)
    {
        foreach (List<int> table in sequence.Tables)
        {
            // Back to front: a prefix's last blocks are the least likely to be shared, so they are evicted first.
            for (int i = table.Count - 1; i >= 0; i--)
            {
                Release(table[i]);
            }

            table.Clear();
        }

        sequence.NumCommitted = 0;
        sequence.SlidingSlots = 0;
    }

    /// <summary>Whether the sequence may write logical block <paramref name="logical"/> of <paramref name="layer"/> in place (no copy needed).</summary>
    public bool IsWritable(SequenceBlocks sequence, int layer, int logical)
    {
        int block = sequence.Tables[layer][logical];
        return _refs[block] == 1 && !_hasHash[block];
    }

    /// <summary>
    /// The physical block to write logical block <paramref name="logical"/> of <paramref name="layer"/>:
    /// a block shared with another sequence (or holding a cached prefix) is copied first.
    /// </summary>
    public int EnsureWritable(SequenceBlocks sequence, int layer, int logical)
    {
        int block = sequence.Tables[layer][logical];
        if (IsWritable(sequence, layer, logical))
        {
            return block;
        }

        int copy = Take();
        Pool.Slice(block * BlockBytes, BlockBytes).CopyTo(Pool.Slice(copy * BlockBytes, BlockBytes));
        Release(block);
        sequence.Tables[layer][logical] = copy;
        return copy;
    }

    /// <summary>The widest table among <paramref name="batch"/> (at least 1).</summary>
    public static int TableCols(IReadOnlyList<SequenceBlocks> batch)
    {
        int cols = 1;
        foreach (SequenceBlocks sequence in batch)
        {
            foreach (List<int> table in sequence.Tables)
            {
                cols = Math.Max(cols, table.Count);
            }
        }

        return cols;
    }

    /// <summary>Fills the op's int32 tables <c>[layers, batch, cols]</c>; entries past a table's end are −1.</summary>
    public void WriteTables(IReadOnlyList<SequenceBlocks> batch, Span<int> tables, int cols)
    {
        tables[..(_layout.Layers * batch.Count * cols)].Fill(-1);
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            for (int row = 0; row < batch.Count; row++)
            {
                List<int> table = batch[row].Tables[layer];
                Span<int> target = tables.Slice((layer * batch.Count + row) * cols, cols);
                for (int i = 0; i < table.Count; i++)
                {
                    target[i] = table[i];
                }
            }
        }
    }

    /// <summary>
    /// Makes the (empty) sequence share the longest cached run of leading blocks, at most
    /// <paramref name="maxTokens"/> tokens: every global layer must hold each block, every sliding
    /// layer the blocks of its window before the run's end. Returns the tokens matched.
    /// </summary>
    public int MatchPrefix(SequenceBlocks sequence, ReadOnlySpan<UInt128> hashes, int maxTokens)
    {
        int blocks = Math.Min(hashes.Length, maxTokens / BlockTokens);
        while (blocks > 0 && !IsCached(hashes, blocks))
        {
            blocks--;
        }

        if (blocks == 0)
        {
            return 0;
        }

        int first = FirstLiveBlock(blocks * BlockTokens);
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            List<int> table = sequence.Tables[layer];
            for (int b = 0; b < blocks; b++)
            {
                bool skip = _layout.IsTrimmed[layer] && b < first;
                table.Add(skip ? -1 : Share(_cached[(hashes[b], layer)]));
            }
        }

        sequence.NumCommitted = blocks;
        sequence.SlidingSlots = blocks * BlockTokens;
        return blocks * BlockTokens;
    }

    /// <summary>
    /// The chain hash of every full block of <paramref name="tokens"/>: block b's hash covers every token
    /// up to its end and <paramref name="extraKey"/> (anything else that changes the block's contents), as vLLM's do.
    /// </summary>
    public UInt128[] PrefixHashes(ReadOnlySpan<int> tokens, UInt128 extraKey = default)
    {
        var hashes = new UInt128[tokens.Length / BlockTokens];
        Span<byte> input = stackalloc byte[32 + 4 * BlockTokens];
        Span<byte> hash = stackalloc byte[32];
        UInt128 parent = extraKey;
        for (int b = 0; b < hashes.Length; b++)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt128LittleEndian(input, parent);
            System.Buffers.Binary.BinaryPrimitives.WriteUInt128LittleEndian(input[16..], extraKey);
            System.Runtime.InteropServices.MemoryMarshal.AsBytes(tokens.Slice(b * BlockTokens, BlockTokens)).CopyTo(input[32..]);
            System.Security.Cryptography.SHA256.HashData(input, hash);
            hashes[b] = parent = System.Buffers.Binary.BinaryPrimitives.ReadUInt128LittleEndian(hash);
        }

        return hashes;
    }

    /// <summary>Registers the sequence's first <paramref name="numFullBlocks"/> full blocks under their prefix hashes (first writer wins).</summary>
    public void CommitFullBlocks(SequenceBlocks sequence, ReadOnlySpan<UInt128> hashes, int numFullBlocks)
    {
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            List<int> table = sequence.Tables[layer];
            for (int b = sequence.NumCommitted; b < Math.Min(numFullBlocks, hashes.Length); b++)
            {
                int block = table[b];
                if (block >= 0 && !_hasHash[block] && _cached.TryAdd((hashes[b], layer), block))
                {
                    (_hashOfBlock[block], _hasHash[block]) = (hashes[b], true);
                }
            }
        }

        sequence.NumCommitted = Math.Max(sequence.NumCommitted, Math.Min(numFullBlocks, hashes.Length));
    }

    private bool IsCached(ReadOnlySpan<UInt128> hashes, int blocks)
    {
        int first = FirstLiveBlock(blocks * BlockTokens);
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            for (int b = _layout.IsTrimmed[layer] ? first : 0; b < blocks; b++)
            {
                if (!_cached.ContainsKey((hashes[b], layer)))
                {
                    return false;
                }
            }
        }

        return true;
    }

    /// <summary>The first logical block a sliding layer still reads when it holds <paramref name="slots"/> slots.</summary>
    private int FirstLiveBlock(int slots) => Math.Max(0, slots - _layout.SlidingSlots) / BlockTokens;

    private int Share(int block)
    {
        if (_refs[block]++ == 0)
        {
            _cachedFree.Remove(_cachedNode[block]!);
            _cachedNode[block] = null;
            _numUsed++;
        }

        return block;
    }

    /// <summary>A block for a sequence: a free one, else the least recently used cached one (its prefix is forgotten).</summary>
    private int Take()
    {
        int block;
        if (!_free.TryPop(out block))
        {
            block = _cachedFree.First?.Value ?? throw new InvalidOperationException("the KV pool has no free block: callers check NumFreeBlocks first");
            _cachedFree.RemoveFirst();
            _cachedNode[block] = null;
            _cached.Remove((_hashOfBlock[block], LayerOf(block)));
            _hasHash[block] = false;
        }

        _refs[block] = 1;
        _numUsed++;
        return block;
    }

    private void Release(int block)
    {
        if (block < 0)
        {
            return;
        }

        if (--_refs[block] > 0)
        {
            return;
        }

        _numUsed--;
        if (_hasHash[block])
        {
            _cachedNode[block] = _cachedFree.AddLast(block);
        }
        else
        {
            _free.Push(block);
        }
    }

    /// <summary>The layer a cached block was registered for (blocks of different layers share a hash).</summary>
    private int LayerOf(int block)
    {
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            if (_cached.TryGetValue((_hashOfBlock[block], layer), out int registered) && registered == block)
            {
                return layer;
            }
        }

        throw new InvalidOperationException($"cached block {block} is not registered");
    }

    public void Dispose() => Pool.Dispose();
}

/// <summary>One sequence's block tables: per layer, the physical block of each logical block (−1: freed, before a sliding window).</summary>
public sealed class SequenceBlocks(int layers)
{
    public List<int>[] Tables { get; } = [.. Enumerable.Range(0, layers).Select(_ => new List<int>())];

    /// <summary>Leading full blocks already registered for prefix caching.</summary>
    public int NumCommitted { get; set; }

    /// <summary>Slots the sliding layers' blocks cover (the sequence's length after its last growth): their window is read from there.</summary>
    public int SlidingSlots { get; set; }
}
