using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// The block manager without a model. Unless a test says otherwise: blocks of 4 slots of one
/// KV head × 4 floats (128 bytes), window 9 (sliding layers keep 8 slots = 2 blocks).
/// </summary>
public sealed class KvCacheManagerTests
{
    private const int BlockTokens = 4, BlockBytes = 128;

    private static KvCacheManager Manager(string layers, int numBlocks, int window = 9) =>
        new(KvLayouts.Of(layers, window), numBlocks * (long)BlockBytes, BlockTokens);

    private static byte[] Read(KvCacheManager kv, int block)
    {
        var bytes = new byte[kv.BlockBytes];
        kv.ReadBlock(block, bytes);
        return bytes;
    }

    private static int[] Tokens(int seed, int count)
    {
        var rng = new Random(seed);
        var tokens = new int[count];
        for (int i = 0; i < count; i++)
        {
            tokens[i] = rng.Next(1000);
        }

        return tokens;
    }

    private static UInt128[] Hashes(int seed, int count, UInt128 extraKey = default) => BlockHashes.Of(Tokens(seed, count), BlockTokens, extraKey);

    private static SequenceBlocks Grown(KvCacheManager kv, int slots)
    {
        SequenceBlocks seq = kv.NewSequence();
        Assert.True(kv.TryGrow(seq, slots, slots));
        return seq;
    }

    [Fact]
    public void ThePoolIsOneAlignedBufferOfWholeBlocks()
    {
        // 2 KV heads × 8 fp16 = 32 bytes a slot; 16 slots × keys and values = 1024 bytes a block.
        var layout = KvLayouts.Of("GS", window: 512, heads: 2, headDim: 8, type: TensorElementType.Float16);
        using var kv = new KvCacheManager(layout, 10_500);
        Assert.Equal(1024, kv.BlockBytes);
        Assert.Equal(10, kv.NumBlocks);
        Assert.Equal(10_240, kv.AllocatedBytes);
        Assert.Equal(10_240, kv.Pool.Bytes);
        Assert.Equal(0, kv.PoolPointer % 64);
        Assert.Equal((10, 0, 0, 0.0), (kv.NumFreeBlocks, kv.NumUsedBlocks, kv.NumCachedBlocks, kv.Usage));
    }

    [Fact]
    public void ABudgetBelowOneBlockPerLayerIsRefused()
    {
        var error = Assert.Throws<ArgumentOutOfRangeException>(() => Manager("GSG", numBlocks: 2));
        Assert.Contains("one token needs a block in each of the 3 layers: at least 384 bytes", error.Message);
        using var smallest = Manager("GSG", numBlocks: 3);
        Assert.Equal(3, smallest.NumBlocks);
    }

    [Fact]
    public void GlobalLayersHoldABlockForEveryFourSlots()
    {
        using var kv = Manager("GG", numBlocks: 10);
        SequenceBlocks seq = kv.NewSequence();
        Assert.Equal(4, kv.BlocksToGrow(seq, 5, 5));
        Assert.True(kv.TryGrow(seq, 5, 5));
        Assert.Equal([0, 1], seq.Table(0).ToArray());
        Assert.Equal([2, 3], seq.Table(1).ToArray());
        Assert.Equal(0, kv.BlocksToGrow(seq, 8, 8));
        Assert.Equal(2, kv.BlocksToGrow(seq, 9, 9));
        Assert.Equal((6, 4, 0.4), (kv.NumFreeBlocks, kv.NumUsedBlocks, kv.Usage));
    }

    [Fact]
    public void SlidingLayersReleaseBlocksOnceTheyLeaveTheWindow()
    {
        using var kv = Manager("GS", numBlocks: 20);
        SequenceBlocks seq = Grown(kv, 12);
        Assert.Equal(6, kv.NumUsedBlocks);

        // Growing 12 → 13: the query at slot 12 sees slots 4..12, so block 0 (slots 0..3) goes.
        Assert.True(kv.TryGrow(seq, 13, 13));
        Assert.Equal(-1, seq.BlockAt(1, 0));
        Assert.Equal(1, seq.FirstSlidingBlock);
        Assert.Equal(4 + 3, kv.NumUsedBlocks);

        // 13 → 17 keeps block 1: the query at slot 13 still reads slot 5.
        Assert.True(kv.TryGrow(seq, 17, 17));
        Assert.Equal(1, seq.FirstSlidingBlock);
        Assert.True(kv.TryGrow(seq, 18, 18));
        Assert.Equal(2, seq.FirstSlidingBlock);
        Assert.Equal([-1, -1, 5, 6, 8], seq.Table(1).ToArray());
        Assert.Equal(5 + 3, kv.NumUsedBlocks);
        Assert.Equal(5, seq.Table(0).Length);
    }

    [Fact]
    public void TryGrowIsAllOrNothing()
    {
        using var kv = Manager("GG", numBlocks: 5);
        SequenceBlocks first = Grown(kv, 8);
        SequenceBlocks second = kv.NewSequence();
        int[] before = [.. first.Table(0), .. first.Table(1)];

        Assert.Equal(2, kv.BlocksToGrow(first, 9, 9));
        Assert.False(kv.TryGrow(first, 9, 9));
        Assert.False(kv.TryGrow(second, 1, 1));
        Assert.Equal(before, (int[])[.. first.Table(0), .. first.Table(1)]);
        Assert.Equal((8, 8, 0), (first.NumGlobalSlots, first.NumSlidingSlots, second.NumSlidingSlots));
        Assert.Equal((1, 4), (kv.NumFreeBlocks, kv.NumUsedBlocks));
        kv.CheckConsistency();
    }

    [Fact]
    public void BlocksAGrowthReleasesCountTowardIt()
    {
        // Sliding only, 3 blocks: at 12 slots every block is taken, yet 12 → 13 fits because block 0 leaves the window.
        using var kv = Manager("S", numBlocks: 3);
        SequenceBlocks seq = Grown(kv, 12);
        Assert.Equal(0, kv.NumFreeBlocks);
        Assert.Equal(1, kv.BlocksToGrow(seq, 13, 13));
        Assert.True(kv.TryGrow(seq, 13, 13));
        Assert.Equal([-1, 1, 2, 0], seq.Table(0).ToArray());
    }

    [Fact]
    public void ShrinkReleasesTheGlobalBlocksPastTheKeptSlots()
    {
        using var kv = Manager("GS", numBlocks: 20);
        SequenceBlocks seq = Grown(kv, 20);
        kv.Shrink(seq, 9);
        Assert.Equal(3, seq.Table(0).Length);
        Assert.Equal(5, seq.Table(1).Length);
        Assert.True(seq.IsCompacted);
        Assert.Equal(8, kv.NumUsedBlocks);

        // Compacted: global and sliding lengths now differ; the next step releases sliding blocks 0..2.
        Assert.Equal(1, kv.BlocksToGrow(seq, 10, 21));
        Assert.True(kv.TryGrow(seq, 10, 21));
        Assert.Equal((3, 3), (kv.NumLogicalBlocks(seq, 0), seq.FirstSlidingBlock));
        Assert.Equal(3 + 3, kv.NumUsedBlocks);
        Assert.Throws<ArgumentOutOfRangeException>(() => kv.Shrink(seq, 11));
        Assert.Throws<ArgumentOutOfRangeException>(() => kv.TryGrow(seq, 22, 21));
    }

    [Fact]
    public void FreeLeavesNoReferenceBehind()
    {
        using var kv = Manager("GSGS", numBlocks: 40);
        UInt128[] hashes = Hashes(1, 16);
        SequenceBlocks first = Grown(kv, 16);
        kv.CommitFullBlocks(first, hashes, 4);
        SequenceBlocks second = kv.NewSequence();
        Assert.Equal(12, kv.MatchPrefix(second, hashes, 15));
        Assert.True(kv.TryGrow(second, 30, 30));
        kv.Shrink(second, 20);

        kv.Free(first);
        kv.Free(second);
        Assert.True(second.IsEmpty);
        Assert.Equal((0, 40), (kv.NumUsedBlocks, kv.NumFreeBlocks));
        for (int block = 0; block < kv.NumBlocks; block++)
        {
            Assert.Equal(0, kv.RefCount(block));
        }

        kv.CheckConsistency();
        Assert.True(kv.TryGrow(kv.NewSequence(), 40, 40));
        Assert.Equal(0, kv.NumFreeBlocks);
    }

    [Fact]
    public void WriteTablesLaysOutLogicalBlocksWithReleasedSlidingOnesAsMinusOne()
    {
        using var kv = Manager("GS", numBlocks: 20);
        SequenceBlocks a = Grown(kv, 12), b = Grown(kv, 5);
        kv.Shrink(a, 4);
        Assert.True(kv.TryGrow(a, 5, 13));
        Assert.True(kv.TryGrow(a, 6, 17));

        // a: global blocks [0, 3]; sliding logical blocks 1..4 held (block 0 released).
        SequenceBlocks[] batch = [a, b];
        Assert.Equal(5, kv.TableCols(batch));
        var tables = new int[2 * 2 * 5];
        kv.WriteTables(batch, tables, 5);
        int[] expected =
        [
            0, 3, -1, -1, -1, /**/ 6, 7, -1, -1, -1, // layer 0 (global): a, b
            -1, a.BlockAt(1, 1), a.BlockAt(1, 2), a.BlockAt(1, 3), a.BlockAt(1, 4), /**/ 8, 9, -1, -1, -1, // layer 1 (sliding)
        ];
        Assert.Equal(expected, tables);
        Assert.Throws<ArgumentException>(() => kv.WriteTables(batch, tables, 4));
    }

    [Fact]
    public void TableColsCoverTheLongestLayer()
    {
        using var kv = Manager("GS", numBlocks: 4, window: 33);
        Assert.Equal(1, kv.TableCols([Grown(kv, 1)]));
        Assert.Equal(1, kv.TableCols([]));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EnsureWritableCopiesASharedBlockAndLeavesTheOtherUntouched(bool staged)
    {
        StagedKvPool? pool = null;
        using var kv = new KvCacheManager(KvLayouts.Of("GS"), 10L * BlockBytes, BlockTokens, staged ? bytes => pool = new StagedKvPool(bytes) : null);
        UInt128[] hashes = Hashes(2, 8);
        SequenceBlocks owner = Grown(kv, 8);
        for (int block = 0; block < 4; block++)
        {
            var bytes = new byte[BlockBytes];
            new Random(block).NextBytes(bytes);
            kv.WriteBlock(block, bytes);
        }

        kv.CommitFullBlocks(owner, hashes, 2);
        SequenceBlocks sharer = kv.NewSequence();
        Assert.Equal(8, kv.MatchPrefix(sharer, hashes, 8));
        int shared = owner.BlockAt(0, 1);
        Assert.Equal(shared, sharer.BlockAt(0, 1));
        byte[] original = Read(kv, shared);

        int copy = kv.EnsureWritable(sharer, 0, 1);
        Assert.NotEqual(shared, copy);
        Assert.Equal(copy, sharer.BlockAt(0, 1));
        Assert.Equal(original, Read(kv, copy));
        kv.WriteBlock(copy, Enumerable.Repeat((byte)0xAB, BlockBytes).ToArray());
        Assert.Equal(original, Read(kv, shared));
        Assert.Equal((1, 1), (kv.RefCount(shared), kv.RefCount(copy)));
        Assert.True(kv.IsCached(shared));
        Assert.False(kv.IsCached(copy));
        Assert.Equal(copy, kv.EnsureWritable(sharer, 0, 1));
        Assert.Equal(staged ? 1 : 0, pool?.Copies ?? 0);
    }

    [Fact]
    public void EnsureWritableForAnOverwriteTakesAFreshBlockWithoutCopying()
    {
        StagedKvPool? pool = null;
        using var kv = new KvCacheManager(KvLayouts.Of("GS"), 10L * BlockBytes, BlockTokens, bytes => pool = new StagedKvPool(bytes));
        UInt128[] hashes = Hashes(2, 8);
        SequenceBlocks owner = Grown(kv, 8);
        kv.CommitFullBlocks(owner, hashes, 2);
        SequenceBlocks sharer = kv.NewSequence();
        kv.MatchPrefix(sharer, hashes, 8);
        int copy = kv.EnsureWritable(sharer, 0, 1, keepContents: false);
        Assert.NotEqual(owner.BlockAt(0, 1), copy);
        Assert.Equal((0, 1), (pool!.Copies, kv.RefCount(copy)));
    }

    [Fact]
    public void EnsureWritableOnACachedBlockCopiesItSoThePrefixStaysCached()
    {
        using var kv = Manager("GS", numBlocks: 10);
        UInt128[] hashes = Hashes(3, 8);
        SequenceBlocks seq = Grown(kv, 8);
        kv.CommitFullBlocks(seq, hashes, 2);
        Assert.Equal(4, kv.NumCachedBlocks);

        int block = seq.BlockAt(0, 0);
        Assert.True(kv.IsShared(seq, 0, 0));
        int copy = kv.EnsureWritable(seq, 0, 0);
        Assert.NotEqual(block, copy);
        Assert.True(kv.IsCached(block));
        Assert.False(kv.IsShared(seq, 0, 0));
        Assert.Equal(4, kv.NumCachedBlocks);
        Assert.Equal(8, kv.MatchPrefix(kv.NewSequence(), hashes, 8));
        Assert.Throws<ArgumentOutOfRangeException>(() => kv.EnsureWritable(seq, 0, 2));
    }

    [Fact]
    public void AFreedSequencesBlocksAreFoundAgainByMatchPrefix()
    {
        using var kv = Manager("GS", numBlocks: 10);
        UInt128[] hashes = Hashes(4, 12);
        SequenceBlocks first = Grown(kv, 12);
        kv.CommitFullBlocks(first, hashes, 3);
        int[] global = first.Table(0).ToArray(), sliding = first.Table(1).ToArray();
        kv.Free(first);
        Assert.Equal((0, 6, 10), (kv.NumUsedBlocks, kv.NumCachedBlocks, kv.NumFreeBlocks));

        SequenceBlocks second = kv.NewSequence();
        Assert.Equal(12, kv.MatchPrefix(second, hashes, 12));
        Assert.Equal(global, second.Table(0).ToArray());
        Assert.Equal([-1, sliding[1], sliding[2]], second.Table(1).ToArray());
        Assert.Equal((5, 5), (kv.NumUsedBlocks, kv.NumFreeBlocks));
        Assert.Equal((12, 12, 1), (second.NumGlobalSlots, second.NumSlidingSlots, second.FirstSlidingBlock));
        kv.CheckConsistency();
    }

    [Fact]
    public void UnderPressureTheLeastRecentlyUsedCachedBlockIsEvictedFirst()
    {
        using var kv = Manager("G", numBlocks: 4);
        UInt128[] older = Hashes(5, 8), newer = Hashes(6, 8);
        SequenceBlocks a = Grown(kv, 8), b = Grown(kv, 8);
        kv.CommitFullBlocks(a, older, 2);
        kv.CommitFullBlocks(b, newer, 2);
        int newerTail = b.BlockAt(0, 1);
        kv.Free(a);
        kv.Free(b);

        // Touch the older prompt: a hit makes its blocks the most recently used again.
        SequenceBlocks hit = kv.NewSequence();
        Assert.Equal(8, kv.MatchPrefix(hit, older, 8));
        kv.Free(hit);

        // Every block is cached, none plain free: a new block evicts the newer prompt's tail first.
        SequenceBlocks fresh = Grown(kv, 4);
        Assert.Equal(newerTail, fresh.BlockAt(0, 0));
        Assert.Equal(4, kv.MatchPrefix(kv.NewSequence(), newer, 8));
        Assert.Equal(8, kv.MatchPrefix(kv.NewSequence(), older, 8));
        kv.CheckConsistency();
    }

    [Fact]
    public void SequencesSharingAPromptReferenceTheSameBlocks()
    {
        using var kv = Manager("GS", numBlocks: 30);
        UInt128[] hashes = Hashes(7, 20);
        SequenceBlocks first = Grown(kv, 20);
        kv.CommitFullBlocks(first, hashes, 5);
        var others = new List<SequenceBlocks>();
        for (int i = 0; i < 2; i++)
        {
            SequenceBlocks seq = kv.NewSequence();
            Assert.Equal(16, kv.MatchPrefix(seq, hashes, 19));
            Assert.True(kv.TryGrow(seq, 20, 20));
            others.Add(seq);
        }

        foreach (SequenceBlocks seq in others)
        {
            Assert.Equal(first.Table(0)[..4].ToArray(), seq.Table(0)[..4].ToArray());
            Assert.Equal([-1, -1, first.BlockAt(1, 2), first.BlockAt(1, 3)], seq.Table(1)[..4].ToArray());
            Assert.NotEqual(first.BlockAt(0, 4), seq.BlockAt(0, 4));
        }

        Assert.Equal(3, kv.RefCount(first.BlockAt(0, 0)));
        Assert.Equal(3, kv.RefCount(first.BlockAt(1, 3)));
        Assert.Equal(1, kv.RefCount(first.BlockAt(1, 0)));
        Assert.Equal(10 + 2 * 2, kv.NumUsedBlocks);
    }

    [Fact]
    public void ADifferentExtraKeyNeverMatches()
    {
        using var kv = Manager("GS", numBlocks: 10);
        int[] tokens = Tokens(8, 12);
        SequenceBlocks seq = Grown(kv, 12);
        kv.CommitFullBlocks(seq, BlockHashes.Of(tokens, BlockTokens, extraKey: 0), 3);
        UInt128[] other = BlockHashes.Of(tokens, BlockTokens, extraKey: 1);
        Assert.Equal(0, kv.MatchPrefix(kv.NewSequence(), other, 12));
        Assert.Equal(12, kv.MatchPrefix(kv.NewSequence(), BlockHashes.Of(tokens, BlockTokens, extraKey: 0), 12));
    }

    [Fact]
    public void AMatchNeedsOnlyTheSlidingBlocksInTheWindowOfItsEnd()
    {
        using var kv = Manager("GS", numBlocks: 20);
        UInt128[] hashes = Hashes(9, 16);
        SequenceBlocks seq = Grown(kv, 12);
        Assert.True(kv.TryGrow(seq, 16, 16));
        kv.CommitFullBlocks(seq, hashes, 4);

        // Sliding block 0 left the window before it was committed: a prefix ending at 4 or 8
        // needs it, one ending at 12 (window: slots 4..11) or 16 does not.
        Assert.Equal(0, kv.MatchPrefix(kv.NewSequence(), hashes, 11));
        Assert.Equal(12, kv.MatchPrefix(kv.NewSequence(), hashes, 15));
        SequenceBlocks whole = kv.NewSequence();
        Assert.Equal(16, kv.MatchPrefix(whole, hashes, 100));
        Assert.Equal(2, whole.FirstSlidingBlock);
        Assert.Throws<InvalidOperationException>(() => kv.MatchPrefix(whole, hashes, 16));
    }

    [Fact]
    public void ACompactedSequenceRegistersNothing()
    {
        using var kv = Manager("GS", numBlocks: 20);
        SequenceBlocks seq = Grown(kv, 16);
        kv.Shrink(seq, 8);
        kv.CommitFullBlocks(seq, Hashes(10, 16), 4);
        Assert.Equal(0, kv.NumCachedBlocks);
    }

    [Fact]
    public void GrowingAndWritingTablesAllocateNothing()
    {
        using var kv = Manager("GSGS", numBlocks: 200);
        UInt128[] hashes = Hashes(11, 128);
        SequenceBlocks[] batch = [kv.NewSequence(128), kv.NewSequence(128)];
        var tables = new int[4 * 2 * 64];
        long allocated = kv.AllocatedBytes;
        IntPtr pool = kv.PoolPointer;
        void Step(int length)
        {
            foreach (SequenceBlocks seq in batch)
            {
                Assert.True(kv.TryGrow(seq, length, length));
                kv.CommitFullBlocks(seq, hashes, length / BlockTokens);
            }

            kv.WriteTables(batch, tables, kv.TableCols(batch));
        }

        // Warm-up past the first full block, the first release and the first registration
        // (one-time lazy statics such as the registry's equality comparer).
        for (int length = 1; length <= 16; length++)
        {
            Step(length);
        }

        long before = GC.GetAllocatedBytesForCurrentThread();
        for (int length = 17; length <= 128; length++)
        {
            Step(length);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
        Assert.Equal((allocated, pool), (kv.AllocatedBytes, kv.PoolPointer));
    }

    [Fact]
    public void ASequenceOfAnotherManagerIsRefused()
    {
        using var kv = Manager("G", numBlocks: 4);
        using var other = Manager("G", numBlocks: 4);
        Assert.Throws<ArgumentException>(() => kv.TryGrow(other.NewSequence(), 1, 1));
    }
}
