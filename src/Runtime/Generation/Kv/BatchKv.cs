using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The decode batch's caches: per layer two native buffers used in turn, one holding the past
/// (rows left-padded to the longest) and one receiving ONNX Runtime's present, so a steady
/// batch feeds each step's present back as the next past with no copy of ours. When the rows
/// change, <see cref="Gather"/> lays the new rows out from wherever their caches live.
/// </summary>
public sealed class BatchKv : IDisposable
{
    /// <summary>Growth headroom in slots, so a growing batch reallocates once per 64 tokens, not every step.</summary>
    private const int SlotHeadroom = 64;

    private readonly KvLayout _layout;
    private readonly NativeBuffer?[,] _keys;
    private readonly NativeBuffer?[,] _values;
    private readonly OrtValue[] _pastKeys, _pastValues, _presentKeys, _presentValues;
    private int _current;

    public BatchKv(KvLayout layout)
    {
        _layout = layout;
        _keys = new NativeBuffer?[2, layout.Layers];
        _values = new NativeBuffer?[2, layout.Layers];
        (_pastKeys, _pastValues) = (new OrtValue[layout.Layers], new OrtValue[layout.Layers]);
        (_presentKeys, _presentValues) = (new OrtValue[layout.Layers], new OrtValue[layout.Layers]);
    }

    public int Rows { get; private set; }

    /// <summary>Global past slots per row (the longest row's length).</summary>
    public int PastLength { get; private set; }

    /// <summary>Native bytes held by both buffer sets, padding included.</summary>
    public long AllocatedBytes { get; private set; }

    public int SlotsOf(int layer, int length) => _layout.SlotsOf(layer, length);

    /// <summary>Lays out <paramref name="rows"/> (their caches right-aligned) as the new past.</summary>
    public void Gather(IReadOnlyList<KvRowSource> rows)
    {
        int length = 0;
        foreach (KvRowSource row in rows)
        {
            length = Math.Max(length, row.Length);
        }

        int target = 1 - _current;
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            int slots = SlotsOf(layer, length);
            NativeBuffer keys = Ensure(_keys, target, layer, rows.Count, slots);
            NativeBuffer values = Ensure(_values, target, layer, rows.Count, slots);
            GatherLayer(rows, layer, KvTensors.View(keys, _layout, rows.Count, slots), isKey: true);
            GatherLayer(rows, layer, KvTensors.View(values, _layout, rows.Count, slots), isKey: false);
        }

        DisposeValues();
        (_current, Rows, PastLength) = (target, rows.Count, length);
    }

    private void GatherLayer(IReadOnlyList<KvRowSource> rows, int layer, KvCopy.CacheView target, bool isKey)
    {
        for (int r = 0; r < rows.Count; r++)
        {
            KvRowSource row = rows[r];
            OrtValue sourceValue = isKey ? row.Keys[layer] : row.Values[layer];
            KvCopy.CacheView source = KvTensors.View(sourceValue, _layout);
            int count = SlotsOf(layer, row.Length);
            KvCopy.Clear(target, r, 0, target.Slots - count);
            KvCopy.Slots(source, row.Row, source.Slots - count, target, r, target.Slots - count, count);
        }
    }

    /// <summary>
    /// The step's caches: the past as it stands and the present buffers (one slot longer)
    /// for ONNX Runtime to write into. The values are valid until the next call here.
    /// </summary>
    public (OrtValue[] PastKeys, OrtValue[] PastValues, OrtValue[] PresentKeys, OrtValue[] PresentValues) Step()
    {
        DisposeValues();
        int next = 1 - _current;
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            int past = SlotsOf(layer, PastLength), present = SlotsOf(layer, PastLength + 1);
            _pastKeys[layer] = KvTensors.Over(_keys[_current, layer]!, _layout, Rows, past);
            _pastValues[layer] = KvTensors.Over(_values[_current, layer]!, _layout, Rows, past);
            _presentKeys[layer] = KvTensors.Over(Ensure(_keys, next, layer, Rows, present), _layout, Rows, present);
            _presentValues[layer] = KvTensors.Over(Ensure(_values, next, layer, Rows, present), _layout, Rows, present);
        }

        return (_pastKeys, _pastValues, _presentKeys, _presentValues);
    }

    /// <summary>After a step has run: its present (one slot longer) becomes the past.</summary>
    public void Advance()
    {
        DisposeValues();
        _current = 1 - _current;
        PastLength++;
    }

    /// <summary>Row <paramref name="row"/> of the current past, as a source for the next <see cref="Gather"/>.</summary>
    public KvRowSource Row(int row, int length)
    {
        if (_pastKeys[0] is null)
        {
            for (int layer = 0; layer < _layout.Layers; layer++)
            {
                int slots = SlotsOf(layer, PastLength);
                _pastKeys[layer] = KvTensors.Over(_keys[_current, layer]!, _layout, Rows, slots);
                _pastValues[layer] = KvTensors.Over(_values[_current, layer]!, _layout, Rows, slots);
            }
        }

        return new KvRowSource(_pastKeys, _pastValues, row, length);
    }

    /// <summary>Frees both buffer sets (the batch emptied).</summary>
    public void Clear()
    {
        DisposeValues();
        for (int set = 0; set < 2; set++)
        {
            for (int layer = 0; layer < _layout.Layers; layer++)
            {
                Replace(_keys, set, layer, null);
                Replace(_values, set, layer, null);
            }
        }

        (Rows, PastLength) = (0, 0);
    }

    private NativeBuffer Ensure(NativeBuffer?[,] buffers, int set, int layer, int rows, int slots)
    {
        long needed = rows * (long)slots * _layout.SlotBytes;
        NativeBuffer? buffer = buffers[set, layer];
        // Shrink too when a buffer is 4x what is needed, so a finished long sequence gives its memory back.
        if (buffer is null || buffer.Bytes < needed || buffer.Bytes > 4 * needed + 4 * SlotHeadroom * _layout.SlotBytes)
        {
            int capacity = _layout.IsTrimmed[layer] ? Math.Min(slots + SlotHeadroom, _layout.SlidingSlots) : slots + SlotHeadroom;
            buffer = new NativeBuffer(rows * (long)Math.Max(capacity, slots) * _layout.SlotBytes);
            Replace(buffers, set, layer, buffer);
        }

        return buffer;
    }

    private void Replace(NativeBuffer?[,] buffers, int set, int layer, NativeBuffer? buffer)
    {
        if (buffers[set, layer] is { } old)
        {
            AllocatedBytes -= old.Bytes;
            old.Dispose();
        }

        buffers[set, layer] = buffer;
        AllocatedBytes += buffer?.Bytes ?? 0;
    }

    private void DisposeValues()
    {
        foreach (OrtValue[] values in (OrtValue[][])[_pastKeys, _pastValues, _presentKeys, _presentValues])
        {
            for (int i = 0; i < values.Length; i++)
            {
                values[i]?.Dispose();
                values[i] = null!;
            }
        }
    }

    public void Dispose() => Clear();
}
