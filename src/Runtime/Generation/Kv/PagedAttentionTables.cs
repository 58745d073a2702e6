namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The block tables the PagedAttention op reads (paged_attention.h): per layer
/// <c>[sequences, cols]</c> int32, logical block b in column b. A sliding layer's blocks that
/// left the window are −1: the op never reads them.
/// </summary>
internal static class PagedAttentionTables
{
    public static int Cols(KvCacheManager kv, IReadOnlyList<SequenceBlocks> batch)
    {
        int cols = 1;
        for (int s = 0; s < batch.Count; s++)
        {
            cols = Math.Max(cols, kv.BlocksFor(Math.Max(batch[s].NumGlobalSlots, batch[s].NumSlidingSlots)));
        }

        return cols;
    }

    /// <summary>Writes every row; the caller checked that <paramref name="cols"/> ≥ <see cref="Cols"/>.</summary>
    public static void Write(KvCacheManager kv, IReadOnlyList<SequenceBlocks> batch, Span<int> tables, int cols)
    {
        int layers = kv.Layout.Layers;
        tables[..(layers * batch.Count * cols)].Fill(-1);
        for (int s = 0; s < batch.Count; s++)
        {
            SequenceBlocks seq = batch[s];
            for (int layer = 0; layer < layers; layer++)
            {
                Span<int> row = tables.Slice((layer * batch.Count + s) * cols, cols);
                int count = kv.NumLogicalBlocks(seq, layer);
                int[] table = seq.RawTable(layer);
                for (int b = kv.Layout.IsTrimmed[layer] ? seq.FirstSlidingBlock : 0; b < count; b++)
                {
                    row[b] = table[b];
                }
            }
        }
    }
}
