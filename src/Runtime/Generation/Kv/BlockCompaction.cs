using System.Runtime.InteropServices;
using Serving.Runtime.KvCompression;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// KV-cache compression on block tables: the policy scores the global layers' slots read from
/// the sequence's blocks, the kept slots move down to the front of those blocks (in slot order,
/// so every move reads a slot before anything overwrites it), and the emptied blocks go back to
/// the pool. True positions live in the sequence's <see cref="KvSlotMap"/>; the attention never
/// reads them. Shared blocks (prefix hits) are copied before they are written.
/// </summary>
/// <remarks>
/// A host pool is read and compacted in place. A device pool's global blocks are first copied to
/// a host stage (one copy per block), scored and compacted there, and the kept blocks written
/// back: the same moves, and a round trip of the cache's global layers per compression (every
/// compression interval, bounded by the budget plus one interval).
/// </remarks>
internal sealed class BlockCompaction(KvCacheManager kv) : IKvKeyReader, IDisposable
{
    private readonly KvLayout _layout = kv.Layout;
    private readonly HostKvPool? _host = kv.Pool as HostKvPool;
    private readonly int[] _globalLayers = [.. kv.Layout.GlobalLayers];
    private readonly int[] _globalIndex = GlobalIndex(kv.Layout);
    private NativeBuffer? _stage;
    private int _stagedBlocks;
    private SequenceBlocks? _blocks;

    /// <summary>
    /// Compresses the sequence's global layers to their keep size; false, with nothing changed,
    /// when the pool lacks the free blocks that copying its shared blocks takes.
    /// </summary>
    public bool TryCompress(Sequence sequence, out int evicted)
    {
        KvCompressor compressor = sequence.Compressor!;
        int keep = compressor.Options.KeepTokens(sequence.PromptLength);
        evicted = sequence.CacheLength - keep;
        if (SharedBlocks(sequence.Blocks, kv.BlocksFor(keep)) > kv.NumFreeBlocks)
        {
            return false;
        }

        _blocks = sequence.Blocks;
        if (_host is null)
        {
            Stage(sequence.Blocks, kv.BlocksFor(sequence.CacheLength));
        }

        int[][] kept = compressor.Choose(this, sequence.SlotMap!, sequence.Length, sequence.PromptLength, sequence.CacheLength);
        foreach (int layer in _globalLayers)
        {
            int c = _globalIndex[layer];
            if (_host is not null)
            {
                for (int logical = 0; logical < kv.BlocksFor(keep); logical++)
                {
                    kv.EnsureWritable(sequence.Blocks, layer, logical);
                }
            }

            for (int head = 0; head < _layout.Heads; head++)
            {
                Move(layer, head, kept[c * _layout.Heads + head]);
            }

            if (_host is null)
            {
                for (int logical = 0; logical < kv.BlocksFor(keep); logical++)
                {
                    kv.WriteBlock(kv.EnsureWritable(sequence.Blocks, layer, logical, keepContents: false), StagedBlock(c, logical));
                }
            }
        }

        kv.Shrink(sequence.Blocks, keep);
        sequence.CacheLength = keep;
        sequence.NumEvictedTokens += evicted;
        _blocks = null;
        return true;
    }

    public ReadOnlySpan<float> Read(int layer, int head, int slots, Span<float> scratch)
    {
        int d = _layout.HeadDim;
        for (int slot = 0; slot < slots; slot++)
        {
            Span<float> target = scratch.Slice(slot * d, d);
            Span<byte> row = Row(layer, head, slot, part: 0);
            if (_layout.ElementBytes == 2)
            {
                ReadOnlySpan<Half> halves = MemoryMarshal.Cast<byte, Half>(row);
                for (int i = 0; i < d; i++)
                {
                    target[i] = (float)halves[i];
                }
            }
            else
            {
                MemoryMarshal.Cast<byte, float>(row).CopyTo(target);
            }
        }

        return scratch[..(slots * d)];
    }

    public void Dispose() => _stage?.Dispose();

    /// <summary>Kept slot <c>kept[i]</c> (ascending, ≥ i) moves to slot i, keys and values.</summary>
    private void Move(int layer, int head, int[] kept)
    {
        for (int i = 0; i < kept.Length; i++)
        {
            if (kept[i] != i)
            {
                Row(layer, head, kept[i], 0).CopyTo(Row(layer, head, i, 0));
                Row(layer, head, kept[i], 1).CopyTo(Row(layer, head, i, 1));
            }
        }
    }

    /// <summary>One head's key (part 0) or value (part 1) row of a slot: in the host pool, or in the stage.</summary>
    private Span<byte> Row(int layer, int head, int slot, int part)
    {
        long within = (((long)part * _layout.Heads + head) * kv.BlockTokens + slot % kv.BlockTokens) * _layout.HeadSlotBytes;
        return _host is not null
            ? _host.Slice(_blocks!.BlockAt(layer, slot / kv.BlockTokens) * kv.BlockBytes + within, _layout.HeadSlotBytes)
            : _stage!.Slice(StageOffset(_globalIndex[layer], slot / kv.BlockTokens) + within, _layout.HeadSlotBytes);
    }

    /// <summary>Copies logical blocks 0 .. <paramref name="count"/> − 1 of every global layer to the stage.</summary>
    private void Stage(SequenceBlocks blocks, int count)
    {
        long bytes = (long)_globalLayers.Length * count * kv.BlockBytes;
        if (_stage is null || _stage.Bytes < bytes)
        {
            _stage?.Dispose();
            _stage = new NativeBuffer(bytes);
        }

        _stagedBlocks = count;
        foreach (int layer in _globalLayers)
        {
            for (int logical = 0; logical < count; logical++)
            {
                kv.ReadBlock(blocks.BlockAt(layer, logical), StagedBlock(_globalIndex[layer], logical));
            }
        }
    }

    private Span<byte> StagedBlock(int globalIndex, int logical) => _stage!.Slice(StageOffset(globalIndex, logical), kv.BlockBytes);

    private long StageOffset(int globalIndex, int logical) => ((long)globalIndex * _stagedBlocks + logical) * kv.BlockBytes;

    /// <summary>Each global layer's index among the global layers (the policies' layer order); −1 for sliding layers.</summary>
    private static int[] GlobalIndex(KvLayout layout)
    {
        int[] index = [.. Enumerable.Repeat(-1, layout.Layers)];
        for (int c = 0; c < layout.GlobalLayers.Count; c++)
        {
            index[layout.GlobalLayers[c]] = c;
        }

        return index;
    }

    private int SharedBlocks(SequenceBlocks blocks, int logicalBlocks)
    {
        int shared = 0;
        foreach (int layer in _globalLayers)
        {
            for (int logical = 0; logical < logicalBlocks; logical++)
            {
                shared += kv.IsShared(blocks, layer, logical) ? 1 : 0;
            }
        }

        return shared;
    }
}
