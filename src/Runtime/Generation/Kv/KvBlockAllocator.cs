namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// Block ids of the KV pool and their bookkeeping, no bytes: reference counts, the plain free
/// blocks (a stack), the cached free blocks (unreferenced but holding a registered prefix hash,
/// in least-recently-used order) and the registry from (hash, layer) to block. Every block is
/// in exactly one state: referenced (count ≥ 1, in no free structure), plain free, or cached
/// free. Allocation takes plain free blocks first, then evicts the least recently used cached
/// one. Nothing here allocates after construction: the registry is sized for every block.
/// </summary>
internal sealed class KvBlockAllocator
{
    private const int None = -1;

    private readonly int[] _refCounts;
    private readonly int[] _freeStack;
    private int _numFree;

    // The cached free blocks, a doubly linked list through _prev/_next: head = least recently used.
    private readonly int[] _prev;
    private readonly int[] _next;
    private int _lruHead = None;
    private int _lruTail = None;
    private int _numLru;

    private readonly UInt128[] _hashes;
    private readonly int[] _hashLayers;
    private readonly Dictionary<BlockKey, int> _registry;

    public KvBlockAllocator(int numBlocks)
    {
        NumBlocks = numBlocks;
        _refCounts = new int[numBlocks];
        _freeStack = new int[numBlocks];
        _prev = new int[numBlocks];
        _next = new int[numBlocks];
        _hashes = new UInt128[numBlocks];
        _hashLayers = new int[numBlocks];
        _hashLayers.AsSpan().Fill(None);
        _registry = new Dictionary<BlockKey, int>(numBlocks);
        for (int block = numBlocks - 1; block >= 0; block--)
        {
            _freeStack[_numFree++] = block;
        }
    }

    public int NumBlocks { get; }

    /// <summary>Plain free plus cached free blocks: what allocation can hand out.</summary>
    public int NumAllocatable => _numFree + _numLru;

    public int NumCached => _registry.Count;

    public int RefCount(int block) => _refCounts[block];

    public bool IsCached(int block) => _hashLayers[block] != None;

    /// <summary>A block with count 1: a plain free one, else the least recently used cached one, its hash dropped.</summary>
    public int Allocate()
    {
        int block;
        if (_numFree > 0)
        {
            block = _freeStack[--_numFree];
        }
        else if (_lruHead != None)
        {
            block = _lruHead;
            Unlink(block);
            Forget(block);
        }
        else
        {
            throw new InvalidOperationException($"all {NumBlocks} KV blocks are referenced; the caller must check NumFreeBlocks first");
        }

        _refCounts[block] = 1;
        return block;
    }

    /// <summary>One more reference; a cached free block leaves the LRU.</summary>
    public void Retain(int block)
    {
        if (_refCounts[block] == 0)
        {
            if (!IsCached(block))
            {
                throw new InvalidOperationException($"block {block} is plain free; only referenced or cached blocks can be shared");
            }

            Unlink(block);
        }

        _refCounts[block]++;
    }

    /// <summary>One reference fewer; at 0 a cached block joins the LRU as most recent, another the free stack.</summary>
    public void Release(int block)
    {
        if (_refCounts[block] <= 0)
        {
            throw new InvalidOperationException($"block {block} released more often than it was referenced");
        }

        if (--_refCounts[block] > 0)
        {
            return;
        }

        if (IsCached(block))
        {
            Append(block);
        }
        else
        {
            _freeStack[_numFree++] = block;
        }
    }

    public bool TryGetCached(int layer, UInt128 hash, out int block) => _registry.TryGetValue(new BlockKey(hash, layer), out block);

    /// <summary>Registers a referenced block under (hash, layer); the first block registered for a key stays.</summary>
    public void Register(int layer, UInt128 hash, int block)
    {
        if (IsCached(block) || _refCounts[block] == 0 || !_registry.TryAdd(new BlockKey(hash, layer), block))
        {
            return;
        }

        _hashes[block] = hash;
        _hashLayers[block] = layer;
    }

    /// <summary>Drops a referenced block's hash, as its contents are about to change.</summary>
    public void Unregister(int block)
    {
        if (_refCounts[block] == 0)
        {
            throw new InvalidOperationException($"block {block} is free; only a referenced block can be rewritten");
        }

        Forget(block);
    }

    private void Forget(int block)
    {
        if (IsCached(block))
        {
            _registry.Remove(new BlockKey(_hashes[block], _hashLayers[block]));
            _hashLayers[block] = None;
        }
    }

    private void Append(int block)
    {
        _prev[block] = _lruTail;
        _next[block] = None;
        if (_lruTail == None)
        {
            _lruHead = block;
        }
        else
        {
            _next[_lruTail] = block;
        }

        _lruTail = block;
        _numLru++;
    }

    private void Unlink(int block)
    {
        int prev = _prev[block], next = _next[block];
        if (prev == None) { _lruHead = next; } else { _next[prev] = next; }
        if (next == None) { _lruTail = prev; } else { _prev[next] = prev; }
        _numLru--;
    }

    /// <summary>
    /// Walks the free stack and the LRU and throws when a block is in two free structures, a
    /// referenced block is in one, an unreferenced block in none, or a count or registry entry disagrees.
    /// </summary>
    public void CheckConsistency()
    {
        var seen = new byte[NumBlocks];
        for (int i = 0; i < _numFree; i++)
        {
            Mark(seen, _freeStack[i], "the free stack", mustBeCached: false);
        }

        int numLru = 0;
        for (int block = _lruHead; block != None; block = _next[block], numLru++)
        {
            Mark(seen, block, "the LRU", mustBeCached: true);
        }

        Expect(numLru == _numLru, $"the LRU links {numLru} blocks but counts {_numLru}");
        for (int block = 0; block < NumBlocks; block++)
        {
            Expect((_refCounts[block] == 0) == (seen[block] == 1), $"block {block} has count {_refCounts[block]} and is in {seen[block]} free structures");
        }

        foreach (var (key, block) in _registry)
        {
            Expect(_hashLayers[block] == key.Layer && _hashes[block] == key.Hash, $"the registry maps ({key.Hash:X}, layer {key.Layer}) to block {block}, which holds another hash");
        }

        int numHashed = 0;
        foreach (int layer in _hashLayers)
        {
            numHashed += layer != None ? 1 : 0;
        }

        Expect(_registry.Count == numHashed, $"{numHashed} blocks claim hashes but the registry holds {_registry.Count}");
    }

    private void Mark(byte[] seen, int block, string where, bool mustBeCached)
    {
        Expect(++seen[block] == 1, $"block {block} is in {where} and in another free structure");
        Expect(IsCached(block) == mustBeCached, $"block {block} in {where} is {(IsCached(block) ? "" : "not ")}cached");
    }

    private static void Expect(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvalidOperationException(message);
        }
    }

    private readonly record struct BlockKey(UInt128 Hash, int Layer);
}
