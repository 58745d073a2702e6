namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// Moves runs of slots between cache tensors laid out <c>[rows, heads, slots, head_dim]</c>
/// (the decoder's past/present layout), as raw bytes so float32 and float16 caches share it.
/// </summary>
public static class KvCopy
{
    /// <summary>A view of one cache tensor: its bytes and its row and slot counts.</summary>
    public readonly ref struct CacheView(Span<byte> bytes, int rows, int slots, KvLayout layout)
    {
        public Span<byte> Bytes { get; } = bytes;
        public int Rows { get; } = rows;
        public int Slots { get; } = slots;
        public int Heads { get; } = layout.Heads;
        public int HeadSlotBytes { get; } = layout.HeadSlotBytes;

        /// <summary>Offset of (row, head, slot).</summary>
        public long Offset(int row, int head, int slot) => (((long)row * Heads + head) * Slots + slot) * HeadSlotBytes;
    }

    /// <summary>Copies <paramref name="count"/> slots of every head from one row to another.</summary>
    public static void Slots(CacheView source, int sourceRow, int sourceSlot, CacheView target, int targetRow, int targetSlot, int count)
    {
        if (count == 0)
        {
            return;
        }

        int bytes = count * source.HeadSlotBytes;
        for (int head = 0; head < source.Heads; head++)
        {
            source.Bytes.Slice(checked((int)source.Offset(sourceRow, head, sourceSlot)), bytes)
                .CopyTo(target.Bytes.Slice(checked((int)target.Offset(targetRow, head, targetSlot)), bytes));
        }
    }

    /// <summary>Zeroes slots: padding must hold finite values, since masked weights (0) times NaN would still be NaN.</summary>
    public static void Clear(CacheView target, int row, int slot, int count)
    {
        if (count == 0)
        {
            return;
        }

        for (int head = 0; head < target.Heads; head++)
        {
            target.Bytes.Slice(checked((int)target.Offset(row, head, slot)), count * target.HeadSlotBytes).Clear();
        }
    }
}
