using System.Buffers.Binary;
using System.Security.Cryptography;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The prefix-cache key of each full block of a token sequence (vLLM v1's block hash):
/// SHA-256 over (parent block's hash, extra key, the block's token ids), truncated to 128 bits.
/// The chain makes block b match only when every token before it matches too. SHA-256 rather
/// than XxHash128: hits share KV between clients, and a non-cryptographic hash lets one client
/// craft a prompt that collides with another's prefix (vLLM moved to SHA-256 for that reason);
/// at 16 tokens a block it costs about 1 µs per 16 tokens.
/// </summary>
public static class BlockHashes
{
    /// <summary>The hashes of every full block of <paramref name="tokens"/>.</summary>
    public static UInt128[] Of(ReadOnlySpan<int> tokens, int blockTokens, UInt128 extraKey)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(blockTokens, 1);
        var hashes = new UInt128[tokens.Length / blockTokens];
        Chain(tokens, blockTokens, extraKey, parent: 0, hashes);
        return hashes;
    }

    /// <summary>
    /// Fills <paramref name="hashes"/> with the chain over consecutive blocks of
    /// <paramref name="tokens"/>, starting after the block whose hash is <paramref name="parent"/>
    /// (0 for the first block), so a decoding sequence hashes each block once when it fills.
    /// </summary>
    public static void Chain(ReadOnlySpan<int> tokens, int blockTokens, UInt128 extraKey, UInt128 parent, Span<UInt128> hashes)
    {
        if ((long)hashes.Length * blockTokens > tokens.Length)
        {
            throw new ArgumentException($"{hashes.Length} blocks of {blockTokens} tokens need more than the {tokens.Length} tokens given", nameof(tokens));
        }

        for (int b = 0; b < hashes.Length; b++)
        {
            hashes[b] = parent = Next(parent, tokens.Slice(b * blockTokens, blockTokens), extraKey);
        }
    }

    /// <summary>The hash of one block whose predecessor's hash is <paramref name="parent"/>.</summary>
    public static UInt128 Next(UInt128 parent, ReadOnlySpan<int> blockTokenIds, UInt128 extraKey)
    {
        // 32 bytes of keys + 4 per token: 96 bytes at 16 tokens; larger blocks go to the heap.
        int bytes = 32 + 4 * blockTokenIds.Length;
        Span<byte> input = bytes <= 1024 ? stackalloc byte[bytes] : new byte[bytes];
        BinaryPrimitives.WriteUInt128LittleEndian(input, parent);
        BinaryPrimitives.WriteUInt128LittleEndian(input[16..], extraKey);
        for (int i = 0; i < blockTokenIds.Length; i++)
        {
            BinaryPrimitives.WriteInt32LittleEndian(input[(32 + 4 * i)..], blockTokenIds[i]);
        }

        Span<byte> hash = stackalloc byte[32];
        SHA256.HashData(input, hash);
        return BinaryPrimitives.ReadUInt128LittleEndian(hash);
    }
}
