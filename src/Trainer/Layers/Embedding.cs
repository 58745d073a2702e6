namespace Serving.Trainer.Layers;

/// <summary>Row lookup scaled by sqrt(hidden), as Gemma3ScaledWordEmbedding does.</summary>
internal static class Embedding
{
    public static void Forward(ReadOnlySpan<float> table, ReadOnlySpan<int> ids, int dim, float scale, Span<float> y)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            ReadOnlySpan<float> row = table.Slice(ids[t] * dim, dim);
            Span<float> yr = y.Slice(t * dim, dim);
            for (int i = 0; i < dim; i++)
            {
                yr[i] = row[i] * scale;
            }
        }
    }

    /// <summary>dTable[id] += scale·dy for each position (a token seen twice collects both).</summary>
    public static void Backward(ReadOnlySpan<int> ids, ReadOnlySpan<float> dy, int dim, float scale, Span<float> dTable)
    {
        for (int t = 0; t < ids.Length; t++)
        {
            Span<float> row = dTable.Slice(ids[t] * dim, dim);
            ReadOnlySpan<float> dyr = dy.Slice(t * dim, dim);
            for (int i = 0; i < dim; i++)
            {
                row[i] += dyr[i] * scale;
            }
        }
    }
}
