using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// KV of prompt prefixes, kept in aligned blocks of <see cref="BlockTokens"/> tokens in a
/// size-limited <see cref="MemoryCache"/> (size = bytes; least recently used go first).
/// A block's key hashes every token up to its end (SHA-256 chain, as vLLM does), so a block
/// matches only when the whole prefix before it matches. A block holds every layer's keys and
/// values for its tokens, sliding layers included, so any cached length can be resumed.
/// </summary>
public sealed class PrefixCache : IDisposable
{
    private readonly KvLayout _layout;
    private readonly MemoryCache _cache;
    private readonly long _capacityBytes;

    public PrefixCache(KvLayout layout, int blockTokens, long capacityBytes)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        _layout = layout;
        BlockTokens = blockTokens;
        BlockBytes = 2L * layout.Layers * blockTokens * layout.SlotBytes;
        _capacityBytes = Math.Max(capacityBytes, 1);
        _cache = new MemoryCache(new MemoryCacheOptions { SizeLimit = _capacityBytes, CompactionPercentage = 0.25, TrackStatistics = true });
    }

    public int BlockTokens { get; }

    public long BlockBytes { get; }

    /// <summary>The chain keys of every whole block of <paramref name="ids"/>.</summary>
    public UInt128[] BlockKeys(ReadOnlySpan<int> ids)
    {
        var keys = new UInt128[ids.Length / BlockTokens];
        Span<byte> input = stackalloc byte[16 + 4 * BlockTokens];
        Span<byte> hash = stackalloc byte[32];
        UInt128 parent = 0;
        for (int b = 0; b < keys.Length; b++)
        {
            BinaryPrimitives.WriteUInt128LittleEndian(input, parent);
            MemoryMarshal.AsBytes(ids.Slice(b * BlockTokens, BlockTokens)).CopyTo(input[16..]);
            SHA256.HashData(input, hash);
            keys[b] = parent = BinaryPrimitives.ReadUInt128LittleEndian(hash);
        }

        return keys;
    }

    /// <summary>The cached blocks at the start of <paramref name="keys"/>, at most <paramref name="maxBlocks"/>.</summary>
    public List<byte[]> Lookup(UInt128[] keys, int maxBlocks)
    {
        var blocks = new List<byte[]>();
        for (int b = 0; b < Math.Min(keys.Length, maxBlocks); b++)
        {
            if (!_cache.TryGetValue(keys[b], out byte[]? block) || block is null)
            {
                break;
            }

            blocks.Add(block);
        }

        return blocks;
    }

    /// <summary>
    /// Stores the whole blocks among tokens [<paramref name="start"/>, <paramref name="end"/>)
    /// from row <paramref name="row"/> of a present whose every layer ends, in that row, at token <paramref name="end"/>.
    /// </summary>
    public void Store(UInt128[] keys, int start, int end, IReadOnlyList<OrtValue> presentKeys, IReadOnlyList<OrtValue> presentValues, int row)
    {
        MakeRoom((end - start) / BlockTokens * BlockBytes);
        for (int b = (start + BlockTokens - 1) / BlockTokens; (b + 1) * BlockTokens <= end && b < keys.Length; b++)
        {
            if (_cache.TryGetValue(keys[b], out _))
            {
                continue;
            }

            byte[] block = new byte[BlockBytes];
            for (int layer = 0; layer < _layout.Layers; layer++)
            {
                CopyOut(KvTensors.View(presentKeys[layer], _layout), row, end - b * BlockTokens, BlockView(block, layer, isKey: true));
                CopyOut(KvTensors.View(presentValues[layer], _layout), row, end - b * BlockTokens, BlockView(block, layer, isKey: false));
            }

            _cache.Set(keys[b], block, new MemoryCacheEntryOptions { Size = BlockBytes });
        }
    }

    /// <summary>
    /// Evicts least recently used blocks first when the new ones would not fit: a full
    /// MemoryCache refuses new entries until its background compaction runs, which lost a
    /// third of a 900-token prefix in the benchmark before this.
    /// </summary>
    private void MakeRoom(long bytes)
    {
        long used = _cache.GetCurrentStatistics()?.CurrentEstimatedSize ?? 0;
        if (bytes > 0 && used + bytes > _capacityBytes)
        {
            _cache.Compact(Math.Min(1.0, (used + bytes - _capacityBytes) / (double)_capacityBytes + 0.1));
        }
    }

    /// <summary>The slots a sequence resumes from: <paramref name="blocks"/> laid out as one-row past tensors.</summary>
    public void Restore(List<byte[]> blocks, KvCopy.CacheView target, int layer, bool isKey)
    {
        int length = blocks.Count * BlockTokens;
        int first = length - target.Slots;
        for (int b = first / BlockTokens; b < blocks.Count; b++)
        {
            int from = Math.Max(first - b * BlockTokens, 0);
            KvCopy.Slots(BlockView(blocks[b], layer, isKey), 0, from, target, 0, b * BlockTokens + from - first, BlockTokens - from);
        }
    }

    /// <summary>Block layout: per layer, keys then values, each <c>[1, heads, BlockTokens, head_dim]</c>.</summary>
    private KvCopy.CacheView BlockView(byte[] block, int layer, bool isKey)
    {
        long part = BlockTokens * _layout.SlotBytes;
        return new KvCopy.CacheView(block.AsSpan(checked((int)((2 * layer + (isKey ? 0 : 1)) * part)), (int)part), 1, BlockTokens, _layout);
    }

    /// <summary>Copies the block that starts <paramref name="fromEnd"/> slots before the present's end.</summary>
    private void CopyOut(KvCopy.CacheView present, int row, int fromEnd, KvCopy.CacheView block) =>
        KvCopy.Slots(present, row, present.Slots - fromEnd, block, 0, 0, BlockTokens);

    public void Dispose() => _cache.Dispose();
}
