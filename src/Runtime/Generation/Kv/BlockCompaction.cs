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
internal sealed class BlockCompaction(KvCacheManager kv) : IKvKeyReader
{
    private readonly KvLayout _layout = kv.Layout;
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
        int[][] kept = compressor.Choose(this, sequence.SlotMap!, sequence.Length, sequence.PromptLength, sequence.CacheLength);
        for (int layer = 0, c = 0; layer < _layout.Layers; layer++)
        {
            if (_layout.IsTrimmed[layer])
            {
                continue;
            }

            for (int logical = 0; logical < kv.BlocksFor(keep); logical++)
            {
                kv.EnsureWritable(sequence.Blocks, layer, logical);
            }

            for (int head = 0; head < _layout.Heads; head++)
            {
                Move(sequence.Blocks, layer, head, kept[c * _layout.Heads + head]);
            }

            c++;
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
            Row(_blocks!, layer, head, slot, part: 0).CopyTo(scratch.Slice(slot * d, d));
        }

        return scratch[..(slots * d)];
    }

    /// <summary>Kept slot <c>kept[i]</c> (ascending, ≥ i) moves to slot i, keys and values.</summary>
    private void Move(SequenceBlocks blocks, int layer, int head, int[] kept)
    {
        for (int i = 0; i < kept.Length; i++)
        {
            if (kept[i] != i)
            {
                Row(blocks, layer, head, kept[i], 0).CopyTo(Row(blocks, layer, head, i, 0));
                Row(blocks, layer, head, kept[i], 1).CopyTo(Row(blocks, layer, head, i, 1));
            }
        }
    }

    /// <summary>One head's key (part 0) or value (part 1) row of a slot, in the pool.</summary>
    private Span<float> Row(SequenceBlocks blocks, int layer, int head, int slot, int part)
    {
        int block = blocks.BlockAt(layer, slot / kv.BlockTokens);
        long floats = block * (kv.BlockBytes / 4) + (((long)part * _layout.Heads + head) * kv.BlockTokens + slot % kv.BlockTokens) * _layout.HeadDim;
        return MemoryMarshal.Cast<byte, float>(kv.Pool.Slice(floats * 4, _layout.HeadDim * 4));
    }

    private int SharedBlocks(SequenceBlocks blocks, int logicalBlocks)
    {
        int shared = 0;
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            for (int logical = 0; !_layout.IsTrimmed[layer] && logical < logicalBlocks; logical++)
            {
                shared += kv.IsShared(blocks, layer, logical) ? 1 : 0;
            }
        }

        return shared;
    }
}
