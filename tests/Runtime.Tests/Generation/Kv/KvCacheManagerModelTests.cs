using System.Buffers.Binary;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// Seeded random runs of the block manager checked, after every operation, against a model
/// recomputed from the live sequences: reference counts, free structures, and the contents of
/// every block. Each block is stamped, when allocated, with what it holds (its tokens' chain hash
/// and layer, or a mark once compaction rewrote it), so a prefix hit or copy-on-write that hands
/// a sequence the wrong block shows up as a wrong stamp.
/// </summary>
public sealed class KvCacheManagerModelTests
{
    private const int BlockTokens = 4, MaxTokens = 40, Vocab = 50;

    private sealed record Live(SequenceBlocks Seq, UInt128[] Hashes);

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void RandomOperationsKeepCountsTablesAndContentsConsistent(int seed)
    {
        var rng = new Random(seed);
        using var kv = new KvCacheManager(KvLayouts.Of("GSGS", window: 9), 48 * 128, BlockTokens);
        long allocated = kv.AllocatedBytes;
        IntPtr pool = kv.PoolPointer;
        int[][] prompts = [RandomTokens(rng, 24), RandomTokens(rng, 24), RandomTokens(rng, 24)];
        var live = new List<Live>();
        int hits = 0, refusals = 0, copies = 0;
        for (int op = 0; op < 3000; op++)
        {
            switch (rng.Next(6))
            {
                case 0: hits += Admit(kv, rng, prompts, live) > 0 ? 1 : 0; break;
                case 1 or 2 or 3: refusals += Grow(kv, rng, live) ? 0 : 1; break;
                case 4: copies += Compact(kv, rng, live); break;
                default: FreeOne(kv, rng, live); break;
            }

            CheckModel(kv, live);
        }

        foreach (Live seq in live)
        {
            kv.Free(seq.Seq);
        }

        live.Clear();
        CheckModel(kv, live);
        Assert.Equal((0, kv.NumBlocks), (kv.NumUsedBlocks, kv.NumFreeBlocks));
        Assert.Equal((allocated, pool), (kv.AllocatedBytes, kv.PoolPointer));
        Assert.True(hits > 50 && refusals > 10 && copies > 5, $"the run exercised {hits} prefix hits, {refusals} refused growths, {copies} copies");
    }

    private static int[] RandomTokens(Random rng, int count)
    {
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = rng.Next(Vocab);
        }

        return tokens;
    }

    /// <summary>A new sequence: a shared prompt's start plus its own tokens, resumed from the prefix cache.</summary>
    private static int Admit(KvCacheManager kv, Random rng, int[][] prompts, List<Live> live)
    {
        int[] tokens = RandomTokens(rng, MaxTokens);
        prompts[rng.Next(prompts.Length)].AsSpan(0, rng.Next(25)).CopyTo(tokens);
        UInt128 extraKey = rng.Next(5) == 0 ? 1u : 0u;
        var seq = new Live(kv.NewSequence(), BlockHashes.Of(tokens, BlockTokens, extraKey));
        int matched = kv.MatchPrefix(seq.Seq, seq.Hashes, rng.Next(1, 30));
        live.Add(seq);
        return matched;
    }

    /// <summary>A decode step or prefill chunk; when the pool refuses, nothing changed and the sequence is pre-empted.</summary>
    private static bool Grow(KvCacheManager kv, Random rng, List<Live> live)
    {
        if (live.Count == 0)
        {
            return true;
        }

        Live seq = live[rng.Next(live.Count)];
        int added = Math.Min(rng.Next(2) == 0 ? 1 : rng.Next(1, 13), MaxTokens - seq.Seq.NumSlidingSlots);
        int[] before = Snapshot(kv, seq.Seq);
        int numFree = kv.NumFreeBlocks;
        if (!kv.TryGrow(seq.Seq, seq.Seq.NumGlobalSlots + added, seq.Seq.NumSlidingSlots + added))
        {
            Assert.Equal(before, Snapshot(kv, seq.Seq));
            Assert.Equal(numFree, kv.NumFreeBlocks);
            kv.Free(seq.Seq);
            live.Remove(seq);
            return false;
        }

        Stamp(kv, seq, before);
        kv.CommitFullBlocks(seq.Seq, seq.Hashes, seq.Seq.NumSlidingSlots / BlockTokens);
        return true;
    }

    /// <summary>Compression: rewrites the kept global blocks (copy-on-write where shared), then shrinks.</summary>
    private static int Compact(KvCacheManager kv, Random rng, List<Live> live)
    {
        if (live.Count == 0 || live[^1].Seq.NumGlobalSlots < 2)
        {
            return 0;
        }

        SequenceBlocks seq = live[^1].Seq;
        int kept = rng.Next(1, seq.NumGlobalSlots);
        int keptBlocks = (kept + BlockTokens - 1) / BlockTokens, shared = 0, copies = 0;
        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            for (int b = 0; b < keptBlocks && !kv.Layout.IsTrimmed[layer]; b++)
            {
                shared += kv.IsShared(seq, layer, b) ? 1 : 0;
            }
        }

        if (shared > kv.NumFreeBlocks)
        {
            return 0;
        }

        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            for (int b = 0; b < keptBlocks && !kv.Layout.IsTrimmed[layer]; b++)
            {
                int before = seq.BlockAt(layer, b);
                int block = kv.EnsureWritable(seq, layer, b);
                copies += block != before ? 1 : 0;
                WriteStamp(kv, block, Compacted, layer);
            }
        }

        kv.Shrink(seq, kept);
        return copies;
    }

    private static void FreeOne(KvCacheManager kv, Random rng, List<Live> live)
    {
        if (live.Count > 0)
        {
            Live seq = live[rng.Next(live.Count)];
            kv.Free(seq.Seq);
            live.Remove(seq);
        }
    }

    private static readonly UInt128 Compacted = UInt128.MaxValue;

    /// <summary>Stamps the blocks a growth allocated with what they will hold.</summary>
    private static void Stamp(KvCacheManager kv, Live seq, int[] before)
    {
        int at = 0;
        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            ReadOnlySpan<int> table = seq.Seq.Table(layer);
            int old = before[at++];
            for (int b = old; b < table.Length; b++)
            {
                WriteStamp(kv, table[b], seq.Seq.IsCompacted ? Compacted : seq.Hashes[b], layer);
            }

            at += old;
        }
    }

    private static void WriteStamp(KvCacheManager kv, int block, UInt128 hash, int layer)
    {
        BinaryPrimitives.WriteUInt128LittleEndian(kv.HostBlock(block), hash);
        BinaryPrimitives.WriteInt32LittleEndian(kv.HostBlock(block)[16..], layer);
    }

    /// <summary>Per layer: the table's length, then its entries; the global and sliding lengths last.</summary>
    private static int[] Snapshot(KvCacheManager kv, SequenceBlocks seq)
    {
        var all = new List<int>();
        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            all.Add(seq.NumBlocks(layer));
            all.AddRange(seq.Table(layer).ToArray());
        }

        all.AddRange([seq.NumGlobalSlots, seq.NumSlidingSlots, seq.FirstSlidingBlock]);
        return [.. all];
    }

    private static void CheckModel(KvCacheManager kv, List<Live> live)
    {
        var expected = new int[kv.NumBlocks];
        foreach (Live seq in live)
        {
            CheckTables(kv, seq, expected);
        }

        int used = 0;
        for (int block = 0; block < kv.NumBlocks; block++)
        {
            Assert.Equal(expected[block], kv.RefCount(block));
            used += expected[block] > 0 ? 1 : 0;
        }

        Assert.Equal(used, kv.NumUsedBlocks);
        kv.CheckConsistency();
    }

    /// <summary>Which entries a sequence holds, that the window is held, and every held block's stamp.</summary>
    private static void CheckTables(KvCacheManager kv, Live seq, int[] counts)
    {
        SequenceBlocks s = seq.Seq;
        int windowStart = Math.Max(0, s.NumSlidingSlots - kv.Layout.SlidingSlots) / BlockTokens;
        Assert.True(s.FirstSlidingBlock <= windowStart, $"sliding blocks start at {s.FirstSlidingBlock}, after the window's block {windowStart}");
        for (int layer = 0; layer < kv.Layout.Layers; layer++)
        {
            bool sliding = kv.Layout.IsTrimmed[layer];
            ReadOnlySpan<int> table = s.Table(layer);
            Assert.Equal(((sliding ? s.NumSlidingSlots : s.NumGlobalSlots) + BlockTokens - 1) / BlockTokens, table.Length);
            for (int b = 0; b < table.Length; b++)
            {
                bool held = !sliding || b >= s.FirstSlidingBlock;
                Assert.True(held == table[b] >= 0, $"layer {layer} block {b} is {table[b]}");
                if (held)
                {
                    counts[table[b]]++;
                    CheckStamp(kv, table[b], seq, layer, b);
                }
            }
        }
    }

    private static void CheckStamp(KvCacheManager kv, int block, Live seq, int layer, int b)
    {
        UInt128 hash = BinaryPrimitives.ReadUInt128LittleEndian(kv.HostBlock(block));
        int stampedLayer = BinaryPrimitives.ReadInt32LittleEndian(kv.HostBlock(block)[16..]);
        Assert.Equal(layer, stampedLayer);
        if (!seq.Seq.IsCompacted)
        {
            Assert.True(hash == seq.Hashes[b], $"layer {layer} logical block {b} is block {block}, which holds another block's tokens");
        }
    }
}
