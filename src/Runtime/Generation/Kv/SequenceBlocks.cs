namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The block table of one sequence: per layer, the physical block of each logical block
/// 0, 1, 2, … (logical slot j of a layer is in logical block j / BlockTokens at offset
/// j % BlockTokens). Global layers hold every block below <see cref="NumGlobalSlots"/>;
/// sliding layers hold only the blocks from <see cref="FirstSlidingBlock"/> on, earlier entries
/// are −1. Made by <see cref="KvCacheManager.NewSequence"/> and changed only by its manager;
/// the engine reads it (and hands it back to the manager) on the engine thread.
/// </summary>
public sealed class SequenceBlocks
{
    private readonly int[][] _tables;

    internal SequenceBlocks(KvCacheManager owner, int layers, int capacityBlocks)
    {
        Owner = owner;
        _tables = new int[layers][];
        for (int layer = 0; layer < layers; layer++)
        {
            _tables[layer] = NewTable(capacityBlocks);
        }
    }

    internal KvCacheManager Owner { get; }

    /// <summary>Slots the global layers hold: the true length, or fewer once compression compacted them.</summary>
    public int NumGlobalSlots { get; internal set; }

    /// <summary>Slots the sliding layers have seen: always the true length (every token ever written).</summary>
    public int NumSlidingSlots { get; internal set; }

    /// <summary>The first logical block sliding layers still hold; entries before it are −1.</summary>
    public int FirstSlidingBlock { get; internal set; }

    /// <summary>Leading full blocks already offered to the prefix cache (registered, or found there).</summary>
    internal int NumCommittedBlocks { get; set; }

    /// <summary>
    /// Whether the global layers no longer hold one slot per token (a compression dropped some):
    /// block b of a global layer then no longer holds tokens [16b, 16b + 16), so it cannot be shared.
    /// </summary>
    public bool IsCompacted => NumGlobalSlots < NumSlidingSlots;

    public bool IsEmpty => NumGlobalSlots == 0 && NumSlidingSlots == 0;

    /// <summary>Logical blocks of <paramref name="layer"/>'s table, held or already released (−1).</summary>
    public int NumBlocks(int layer) => Owner.NumLogicalBlocks(this, layer);

    /// <summary>The physical block of logical block <paramref name="logicalBlock"/> of <paramref name="layer"/>, or −1.</summary>
    public int BlockAt(int layer, int logicalBlock) => Table(layer)[logicalBlock];

    /// <summary>The layer's table, <see cref="NumBlocks"/> entries; valid until the manager next changes this sequence.</summary>
    public ReadOnlySpan<int> Table(int layer) => _tables[layer].AsSpan(0, NumBlocks(layer));

    /// <summary>The layer's whole backing array (entries past <see cref="NumBlocks"/> are −1).</summary>
    internal int[] RawTable(int layer) => _tables[layer];

    /// <summary>
    /// Makes room for <paramref name="blocks"/> entries in every layer, doubling, so a sequence
    /// made with a capacity hint never resizes and one without resizes about log2(length / 16) times.
    /// </summary>
    internal void EnsureCapacity(int blocks)
    {
        for (int layer = 0; layer < _tables.Length; layer++)
        {
            int[] table = _tables[layer];
            if (table.Length < blocks)
            {
                int[] grown = NewTable(Math.Max(blocks, 2 * table.Length));
                table.CopyTo(grown, 0);
                _tables[layer] = grown;
            }
        }
    }

    private static int[] NewTable(int capacity)
    {
        var table = new int[Math.Max(capacity, 4)];
        table.AsSpan().Fill(-1);
        return table;
    }
}
