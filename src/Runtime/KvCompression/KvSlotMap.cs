namespace Serving.Runtime.KvCompression;

/// <summary>
/// The true position of every slot of a sequence's compressed layers, per (compressed layer,
/// KV head). Slots kept by the last compression hold the positions recorded then; the slots
/// after them were appended in order from <see cref="AppendedFrom"/>. So appending a token costs
/// nothing, and a compression rewrites the map once.
/// </summary>
public sealed class KvSlotMap(int groups)
{
    private readonly int[][] _kept = new int[groups][];

    /// <summary>Slots the last compression kept (0 before the first).</summary>
    public int KeptCount { get; private set; }

    /// <summary>Position of the first token appended after the last compression.</summary>
    public int AppendedFrom { get; private set; }

    public int Position(int group, int slot) => slot < KeptCount ? _kept[group][slot] : AppendedFrom + (slot - KeptCount);

    /// <summary>Writes the positions of the first <paramref name="positions"/>.Length slots of <paramref name="group"/>.</summary>
    public void Fill(int group, Span<int> positions)
    {
        for (int slot = 0; slot < positions.Length; slot++)
        {
            positions[slot] = Position(group, slot);
        }
    }

    /// <summary>Records a compression: <paramref name="kept"/> holds each group's kept positions in slot order.</summary>
    public void Compacted(int[][] kept, int appendedFrom)
    {
        for (int group = 0; group < _kept.Length; group++)
        {
            _kept[group] = kept[group];
        }

        KeptCount = kept[0].Length;
        AppendedFrom = appendedFrom;
    }
}
