namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The one owner of KV memory (vLLM's block manager): a pool of fixed-size blocks allocated
/// once, per-sequence block tables (<see cref="SequenceBlocks"/>), reference counts, and prefix
/// caching as block sharing. One block holds one layer's keys then values for
/// <see cref="BlockTokens"/> slots, <c>[2, heads, BlockTokens, head_dim]</c>, the layout the
/// PagedAttention op reads in place. Not thread-safe: the engine thread calls every method;
/// the counts are plain ints another thread (telemetry) may read a step late.
/// </summary>
public sealed class KvCacheManager : IDisposable
{
    private readonly KvBlockAllocator _blocks;
    private readonly int[] _globalLayers;
    private readonly int[] _slidingLayers;

    /// <param name="budgetBytes">Bytes for the pool; it takes the whole blocks that fit.</param>
    /// <param name="blockTokens">Slots per block: 16 as vLLM, so a block of Gemma 3 270M (1 KV head × 256, fp32) is 32 KB.</param>
    /// <param name="allocate">Allocates the pool of the given bytes where the model's sessions read it (<see cref="KvPool.Allocate"/>); host memory when null.</param>
    public KvCacheManager(KvLayout layout, long budgetBytes, int blockTokens = 16, Func<long, KvPool>? allocate = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        if (layout.NumTrimmedLayers > 0 && layout.SlidingSlots < 1)
        {
            throw new ArgumentException($"sliding layers need a window of at least 2 tokens; the layout keeps {layout.SlidingSlots} slots", nameof(layout));
        }

        Layout = layout;
        BlockTokens = blockTokens;
        BlockBytes = 2 * blockTokens * layout.SlotBytes;
        long numBlocks = Math.Max(budgetBytes, 0) / BlockBytes;
        if (numBlocks < layout.Layers)
        {
            throw new ArgumentOutOfRangeException(nameof(budgetBytes), $"a KV budget of {budgetBytes} bytes holds {numBlocks} blocks of {BlockBytes} bytes " +
                $"({blockTokens} slots of one layer), but one token needs a block in each of the {layout.Layers} layers: at least {layout.Layers * BlockBytes} bytes");
        }

        NumBlocks = numBlocks <= int.MaxValue ? (int)numBlocks : throw new ArgumentOutOfRangeException(nameof(budgetBytes), $"{numBlocks} blocks do not fit int32 block tables");
        // Arrays: the per-step loops run over them without an enumerator.
        _globalLayers = [.. layout.GlobalLayers];
        _slidingLayers = [.. layout.TrimmedLayers];
        Pool = allocate is null ? new HostKvPool(NumBlocks * BlockBytes) : allocate(NumBlocks * BlockBytes);
        if (Pool.Bytes < NumBlocks * BlockBytes)
        {
            Pool.Dispose();
            throw new ArgumentException($"the allocated KV pool holds {Pool.Bytes} bytes, not the {NumBlocks * BlockBytes} asked for", nameof(allocate));
        }
        _blocks = new KvBlockAllocator(NumBlocks);
    }

    public KvLayout Layout { get; }

    public int BlockTokens { get; }

    /// <summary>Bytes of one block: 2 × heads × BlockTokens × head_dim × element bytes.</summary>
    public long BlockBytes { get; }

    public int NumBlocks { get; }

    /// <summary>The pool, <c>[NumBlocks, 2, heads, BlockTokens, head_dim]</c>, host or device memory; allocated once, never resized.</summary>
    public KvPool Pool { get; }

    public IntPtr PoolPointer => Pool.Pointer;

    public long AllocatedBytes => Pool.Bytes;

    /// <summary>Blocks allocation can hand out: plain free, or cached but unreferenced (evictable).</summary>
    public int NumFreeBlocks => _blocks.NumAllocatable;

    /// <summary>Blocks some sequence references.</summary>
    public int NumUsedBlocks => NumBlocks - NumFreeBlocks;

    /// <summary>The most blocks referenced at once since start (what a single sequence's run peaked at, for `serving generate`).</summary>
    public int PeakUsedBlocks { get; private set; }

    /// <summary>Blocks holding a registered prefix hash, referenced or not.</summary>
    public int NumCachedBlocks => _blocks.NumCached;

    /// <summary>Referenced fraction of the pool, 0 to 1 (vLLM's kv_cache_usage_perc).</summary>
    public double Usage => (double)NumUsedBlocks / NumBlocks;

    /// <summary>Copies physical block <paramref name="block"/> out of the pool into <paramref name="target"/> (<see cref="BlockBytes"/> bytes).</summary>
    public void ReadBlock(int block, Span<byte> target) => Pool.Read(BlockOffset(block), target[..checked((int)BlockBytes)]);

    /// <summary>Copies <paramref name="source"/> (<see cref="BlockBytes"/> bytes) into physical block <paramref name="block"/>.</summary>
    public void WriteBlock(int block, ReadOnlySpan<byte> source) => Pool.Write(BlockOffset(block), source[..checked((int)BlockBytes)]);

    private long BlockOffset(int block)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(block);
        ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(block, NumBlocks);
        return block * BlockBytes;
    }

    /// <summary>An empty sequence; <paramref name="expectedTokens"/> sizes its tables so growing to it never resizes them.</summary>
    public SequenceBlocks NewSequence(int expectedTokens = 0) => new(this, Layout.Layers, BlocksFor(Math.Max(expectedTokens, 0)));

    /// <summary>New blocks that growing to these lengths allocates (blocks it releases from sliding layers not deducted).</summary>
    public int BlocksToGrow(SequenceBlocks seq, int newGlobalSlots, int newSlidingSlots)
    {
        CheckGrowth(seq, newGlobalSlots, newSlidingSlots);
        return _globalLayers.Length * (BlocksFor(newGlobalSlots) - BlocksFor(seq.NumGlobalSlots))
            + _slidingLayers.Length * (BlocksFor(newSlidingSlots) - BlocksFor(seq.NumSlidingSlots));
    }

    /// <summary>
    /// Allocates the blocks for slots up to the new lengths, all or none: false, with nothing
    /// changed, when the pool cannot supply them (the scheduler then pre-empts). First releases
    /// the sliding blocks wholly before the last window − 1 slots of the current length, which
    /// this step's queries no longer see (those blocks count as available). The window is taken
    /// at the current length, not the new one: at window 512 and 16-slot blocks, the decode
    /// query at slot 526 still reads slot 15, in block 0, which a window taken at 527 would release.
    /// </summary>
    public bool TryGrow(SequenceBlocks seq, int newGlobalSlots, int newSlidingSlots)
    {
        int needed = BlocksToGrow(seq, newGlobalSlots, newSlidingSlots);
        int keepFrom = SlidingKeepFrom(seq.NumSlidingSlots);
        if (needed > NumFreeBlocks + NumReleasable(seq, keepFrom))
        {
            return false;
        }

        ReleaseSlidingBefore(seq, keepFrom);
        seq.EnsureCapacity(BlocksFor(newSlidingSlots));
        AllocateBlocks(seq, _globalLayers, BlocksFor(seq.NumGlobalSlots), BlocksFor(newGlobalSlots));
        AllocateBlocks(seq, _slidingLayers, BlocksFor(seq.NumSlidingSlots), BlocksFor(newSlidingSlots));
        seq.NumGlobalSlots = newGlobalSlots;
        seq.NumSlidingSlots = newSlidingSlots;
        PeakUsedBlocks = Math.Max(PeakUsedBlocks, NumUsedBlocks);
        return true;
    }

    /// <summary>After compression compacted the global layers to <paramref name="globalSlots"/> slots, releases their blocks past it.</summary>
    public void Shrink(SequenceBlocks seq, int globalSlots)
    {
        CheckOwner(seq);
        ArgumentOutOfRangeException.ThrowIfNegative(globalSlots);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(globalSlots, seq.NumGlobalSlots);
        int keep = BlocksFor(globalSlots);
        for (int b = BlocksFor(seq.NumGlobalSlots) - 1; b >= keep; b--)
        {
            ReleaseEntry(seq, _globalLayers, b);
        }

        seq.NumGlobalSlots = globalSlots;
    }

    /// <summary>
    /// Releases every block of the sequence (finish, cancel, pre-emption) and empties it. Last
    /// blocks go first, every layer of a block together, so the LRU evicts a prefix's tail before
    /// its head: a hit needs the head, and a block is useless to every layer once one layer lost it.
    /// </summary>
    public void Free(SequenceBlocks seq)
    {
        CheckOwner(seq);
        for (int b = BlocksFor(seq.NumSlidingSlots) - 1; b >= 0; b--)
        {
            ReleaseEntry(seq, _globalLayers, b);
            ReleaseEntry(seq, _slidingLayers, b);
        }

        seq.NumGlobalSlots = seq.NumSlidingSlots = seq.FirstSlidingBlock = seq.NumCommittedBlocks = 0;
    }

    /// <summary>
    /// The physical block to write logical block <paramref name="logicalBlock"/> of
    /// <paramref name="layer"/> into. A block another sequence also references is first copied
    /// into a fresh block, which replaces it in this table (needs one free block: check
    /// <see cref="NumFreeBlocks"/> first, or this throws); so is a block holding a registered
    /// prefix, which stays cached. A block only this sequence references is written in place.
    /// <paramref name="keepContents"/> false skips the copy, for a caller about to overwrite the whole block.
    /// </summary>
    public int EnsureWritable(SequenceBlocks seq, int layer, int logicalBlock, bool keepContents = true)
    {
        CheckOwner(seq);
        int[] table = seq.RawTable(layer);
        int block = logicalBlock < NumLogicalBlocks(seq, layer) ? table[logicalBlock] : -1;
        if (block < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(logicalBlock), $"layer {layer} holds no block {logicalBlock}");
        }

        if (!NeedsCopy(block))
        {
            return block;
        }

        if (NumFreeBlocks == 0)
        {
            throw new InvalidOperationException($"block {block} is shared and no block is free to copy it into; pre-empt a sequence first");
        }

        int copy = _blocks.Allocate();
        if (keepContents)
        {
            Pool.Copy(BlockOffset(block), BlockOffset(copy), BlockBytes);
        }

        _blocks.Release(block);
        table[logicalBlock] = copy;
        return copy;
    }

    /// <summary>
    /// Registers the full blocks 0 .. <paramref name="numFullBlocks"/> − 1 under
    /// <paramref name="blockHashes"/> (the first block registered for a hash and layer stays),
    /// in every layer that still holds them. Blocks registered by an earlier call are skipped,
    /// so calling after every step costs only the new blocks. A compacted sequence registers
    /// nothing: its global blocks no longer hold one token per slot, and every block computed
    /// after the compaction read a compressed past.
    /// </summary>
    public void CommitFullBlocks(SequenceBlocks seq, ReadOnlySpan<UInt128> blockHashes, int numFullBlocks)
    {
        CheckOwner(seq);
        if (numFullBlocks > blockHashes.Length || (long)numFullBlocks * BlockTokens > seq.NumSlidingSlots)
        {
            throw new ArgumentOutOfRangeException(nameof(numFullBlocks), $"{numFullBlocks} full blocks of {BlockTokens} slots exceed the sequence's {seq.NumSlidingSlots} slots or the {blockHashes.Length} hashes");
        }

        if (seq.IsCompacted)
        {
            return;
        }

        for (int b = seq.NumCommittedBlocks; b < numFullBlocks; b++)
        {
            for (int layer = 0; layer < Layout.Layers; layer++)
            {
                int block = seq.RawTable(layer)[b];
                if (block >= 0)
                {
                    _blocks.Register(layer, blockHashes[b], block);
                }
            }
        }

        seq.NumCommittedBlocks = Math.Max(seq.NumCommittedBlocks, numFullBlocks);
    }

    /// <summary>
    /// Makes the empty <paramref name="seq"/> reference the longest cached prefix of
    /// <paramref name="blockHashes"/>: n blocks such that every global layer holds blocks
    /// 0 .. n − 1 and every sliding layer the blocks covering the last window − 1 slots before
    /// n · BlockTokens. Returns the tokens matched, a multiple of BlockTokens, at most
    /// <paramref name="maxTokens"/> (pass prompt − 1 so the last prompt token is computed for its logits).
    /// </summary>
    public int MatchPrefix(SequenceBlocks seq, ReadOnlySpan<UInt128> blockHashes, int maxTokens)
    {
        CheckOwner(seq);
        if (!seq.IsEmpty)
        {
            throw new InvalidOperationException("only an empty sequence can take a cached prefix");
        }

        int n = LongestCachedPrefix(blockHashes[..Math.Min(blockHashes.Length, Math.Max(maxTokens, 0) / BlockTokens)]);
        int tokens = n * BlockTokens;
        int firstSliding = SlidingKeepFrom(tokens);
        seq.EnsureCapacity(n);
        ReferenceCached(seq, _globalLayers, blockHashes, 0, n);
        ReferenceCached(seq, _slidingLayers, blockHashes, firstSliding, n);
        seq.NumGlobalSlots = seq.NumSlidingSlots = tokens;
        seq.FirstSlidingBlock = firstSliding;
        seq.NumCommittedBlocks = n;
        return tokens;
    }

    /// <summary>Columns the op's tables need for <paramref name="batch"/>: the most logical blocks of any sequence's layer.</summary>
    public int TableCols(IReadOnlyList<SequenceBlocks> batch) => PagedAttentionTables.Cols(this, batch);

    /// <summary>
    /// Fills <paramref name="tables"/> as int32 <c>[layers, batch.Count, cols]</c>, row-major,
    /// unused entries −1: logical block b in column b (a sliding layer's released blocks −1).
    /// </summary>
    public void WriteTables(IReadOnlyList<SequenceBlocks> batch, Span<int> tables, int cols)
    {
        int needed = TableCols(batch);
        if (cols < needed || tables.Length < (long)Layout.Layers * batch.Count * cols)
        {
            throw new ArgumentException($"tables of {tables.Length} entries and {cols} columns cannot hold {Layout.Layers} layers × {batch.Count} sequences × {needed} columns");
        }

        for (int s = 0; s < batch.Count; s++)
        {
            CheckOwner(batch[s]);
        }

        PagedAttentionTables.Write(this, batch, tables, cols);
    }

    /// <summary>Logical blocks of a layer's table: its slots rounded up to whole blocks.</summary>
    internal int NumLogicalBlocks(SequenceBlocks seq, int layer) => BlocksFor(Layout.IsTrimmed[layer] ? seq.NumSlidingSlots : seq.NumGlobalSlots);

    internal int RefCount(int block) => _blocks.RefCount(block);

    /// <summary>Whether writing logical block <paramref name="logicalBlock"/> of <paramref name="layer"/> needs a copy first (another sequence references it).</summary>
    public bool IsShared(SequenceBlocks seq, int layer, int logicalBlock) => NeedsCopy(seq.RawTable(layer)[logicalBlock]);

    /// <summary>
    /// Another sequence references the block, or it holds a registered prefix: a compaction
    /// copies it rather than dropping the prefix, so requests that share a system prompt keep
    /// their hit after one of them compressed its cache.
    /// </summary>
    private bool NeedsCopy(int block) => _blocks.RefCount(block) > 1 || _blocks.IsCached(block);

    internal bool IsCached(int block) => _blocks.IsCached(block);

    /// <summary>Throws when the free structures, counts and registry disagree (tests).</summary>
    internal void CheckConsistency() => _blocks.CheckConsistency();

    public void Dispose() => Pool.Dispose();

    internal int BlocksFor(int slots) => (int)(((long)slots + BlockTokens - 1) / BlockTokens);

    /// <summary>The first logical block a sliding layer keeps at <paramref name="length"/>: the one holding slot length − (window − 1).</summary>
    private int SlidingKeepFrom(int length) => _slidingLayers.Length == 0 ? 0 : Math.Max(0, length - Layout.SlidingSlots) / BlockTokens;

    private int LongestCachedPrefix(ReadOnlySpan<UInt128> hashes)
    {
        int best = 0, slidingRun = 0;
        for (int b = 0; b < hashes.Length && AllCached(_globalLayers, hashes[b]); b++)
        {
            // Sliding layers need only the run of blocks ending at the prefix's last block.
            slidingRun = AllCached(_slidingLayers, hashes[b]) ? slidingRun + 1 : 0;
            int n = b + 1;
            if (slidingRun >= n - SlidingKeepFrom(n * BlockTokens))
            {
                best = n;
            }
        }

        return best;
    }

    private bool AllCached(int[] layers, UInt128 hash)
    {
        foreach (int layer in layers)
        {
            if (!_blocks.TryGetCached(layer, hash, out _))
            {
                return false;
            }
        }

        return true;
    }

    private void ReferenceCached(SequenceBlocks seq, int[] layers, ReadOnlySpan<UInt128> hashes, int from, int to)
    {
        foreach (int layer in layers)
        {
            for (int b = from; b < to; b++)
            {
                _blocks.TryGetCached(layer, hashes[b], out int block);
                _blocks.Retain(block);
                seq.RawTable(layer)[b] = block;
            }
        }
    }

    private void AllocateBlocks(SequenceBlocks seq, int[] layers, int from, int to)
    {
        foreach (int layer in layers)
        {
            int[] table = seq.RawTable(layer);
            for (int b = from; b < to; b++)
            {
                table[b] = _blocks.Allocate();
            }
        }
    }

    /// <summary>Sliding blocks before <paramref name="keepFrom"/> that releasing would make allocatable (only this sequence holds them).</summary>
    private int NumReleasable(SequenceBlocks seq, int keepFrom)
    {
        int count = 0;
        foreach (int layer in _slidingLayers)
        {
            int[] table = seq.RawTable(layer);
            for (int b = seq.FirstSlidingBlock; b < keepFrom; b++)
            {
                count += table[b] >= 0 && _blocks.RefCount(table[b]) == 1 ? 1 : 0;
            }
        }

        return count;
    }

    private void ReleaseSlidingBefore(SequenceBlocks seq, int keepFrom)
    {
        for (int b = keepFrom - 1; b >= seq.FirstSlidingBlock; b--)
        {
            ReleaseEntry(seq, _slidingLayers, b);
        }

        seq.FirstSlidingBlock = Math.Max(seq.FirstSlidingBlock, keepFrom);
    }

    /// <summary>Releases logical block <paramref name="b"/> of each of <paramref name="layers"/> that holds it and clears the entry.</summary>
    private void ReleaseEntry(SequenceBlocks seq, int[] layers, int b)
    {
        foreach (int layer in layers)
        {
            int[] table = seq.RawTable(layer);
            if (table[b] >= 0)
            {
                _blocks.Release(table[b]);
                table[b] = -1;
            }
        }
    }

    private void CheckGrowth(SequenceBlocks seq, int newGlobalSlots, int newSlidingSlots)
    {
        CheckOwner(seq);
        if (newGlobalSlots < seq.NumGlobalSlots || newSlidingSlots < seq.NumSlidingSlots || newGlobalSlots > newSlidingSlots)
        {
            throw new ArgumentOutOfRangeException(nameof(newGlobalSlots), $"growing from ({seq.NumGlobalSlots} global, {seq.NumSlidingSlots} sliding) slots to " +
                $"({newGlobalSlots}, {newSlidingSlots}): lengths never shrink here (Shrink does) and global slots never exceed the true length");
        }
    }

    private void CheckOwner(SequenceBlocks seq)
    {
        if (!ReferenceEquals(seq.Owner, this))
        {
            throw new ArgumentException("the sequence belongs to another KV cache manager", nameof(seq));
        }
    }
}
