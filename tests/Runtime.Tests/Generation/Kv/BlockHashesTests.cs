using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Tests.Generation.Kv;

public sealed class BlockHashesTests
{
    [Fact]
    public void ABlocksHashCoversEveryTokenBeforeIt()
    {
        int[] tokens = [.. Enumerable.Range(0, 48)];
        int[] changedFirst = [.. tokens];
        changedFirst[3] = 999;
        UInt128[] hashes = BlockHashes.Of(tokens, 16, 0), changed = BlockHashes.Of(changedFirst, 16, 0);
        Assert.Equal(3, hashes.Length);
        Assert.Equal(2, BlockHashes.Of(tokens.AsSpan(0, 47), 16, 0).Length);
        for (int b = 0; b < 3; b++)
        {
            Assert.NotEqual(hashes[b], changed[b]);
        }

        Assert.Equal(hashes, BlockHashes.Of(tokens, 16, 0));
        Assert.NotEqual(hashes[0], BlockHashes.Of(tokens, 16, extraKey: 1)[0]);
    }

    [Fact]
    public void AChainResumesFromItsParent()
    {
        int[] tokens = [.. Enumerable.Range(100, 64)];
        UInt128[] whole = BlockHashes.Of(tokens, 16, 7);
        var tail = new UInt128[2];
        BlockHashes.Chain(tokens.AsSpan(32), 16, 7, parent: whole[1], tail);
        Assert.Equal(whole[2..], tail);
        Assert.Equal(whole[3], BlockHashes.Next(whole[2], tokens.AsSpan(48, 16), 7));
        Assert.Throws<ArgumentException>(() => BlockHashes.Chain(tokens.AsSpan(0, 20), 16, 0, 0, new UInt128[2]));
    }
}
