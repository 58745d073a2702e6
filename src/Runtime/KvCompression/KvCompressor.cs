using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// Compresses one sequence's cache: scores the slots of every compressed layer with the
/// policy, keeps the protected tokens and the best-scored rest up to the budget, and copies
/// the kept slots (in their old order) into new, shorter cache tensors. Sliding layers are
/// copied as they are. By default each KV head keeps one token set in every compressed layer,
/// chosen by the layers' mean score; <see cref="KvCompressionOptions.PerLayer"/> lets each
/// layer choose. Runs on the engine thread; its scratch buffers are reused.
/// </summary>
public sealed class KvCompressor
{
    private readonly KvLayout _layout;
    private readonly int[] _compressedLayers;
    private float[] _keys = [], _scores = [], _mean = [], _sortKeys = [];
    private int[] _positions = [], _order = [];
    private bool[] _protected = [];

    public KvCompressor(KvLayout layout, IKvEvictionPolicy policy, KvCompressionOptions options)
    {
        (_layout, Policy, Options) = (layout, policy, options);
        _compressedLayers = [.. Enumerable.Range(0, layout.Layers).Where(layer => !layout.IsTrimmed[layer])];
    }

    public IKvEvictionPolicy Policy { get; }
    public KvCompressionOptions Options { get; }

    /// <summary>Groups of a <see cref="KvSlotMap"/> for this layout: compressed layers × KV heads.</summary>
    public int NumGroups => _compressedLayers.Length * _layout.Heads;

    public KvSlotMap CreateSlotMap() => new(NumGroups);

    /// <summary>
    /// New caches holding <see cref="KvCompressionOptions.KeepTokens"/> slots of each compressed
    /// layer (row 0 of batch-1 tensors), from row <c>source.Row</c> of <paramref name="source"/>,
    /// whose compressed layers hold <c>source.Length</c> slots right-aligned.
    /// <paramref name="length"/> is the sequence's true length (the next token's position).
    /// </summary>
    public DecoderOutputs Compact(KvRowSource source, KvSlotMap map, int length, int promptLength)
    {
        int cache = source.Length, keep = Options.KeepTokens(promptLength);
        if (cache <= keep)
        {
            throw new InvalidOperationException($"a cache of {cache} tokens needs no compression to {keep}");
        }

        int[][] kept = Choose(new RowKeys(this, source), map, length, promptLength, cache);
        var keys = new OrtValue[_layout.Layers];
        var values = new OrtValue[_layout.Layers];
        for (int layer = 0, c = 0; layer < _layout.Layers; layer++)
        {
            bool compressed = !_layout.IsTrimmed[layer];
            int[][]? slots = compressed ? kept[(c * _layout.Heads)..((c + 1) * _layout.Heads)] : null;
            keys[layer] = Copy(source.Keys[layer], source.Row, cache, layer, slots, keep);
            values[layer] = Copy(source.Values[layer], source.Row, cache, layer, slots, keep);
            c += compressed ? 1 : 0;
        }

        return DecoderOutputs.FromCaches(keys, values);
    }

    /// <summary>
    /// Which slots of a cache of <paramref name="cache"/> slots survive a compression to
    /// <see cref="KvCompressionOptions.KeepTokens"/>: per group (compressed layer × KV head) the kept
    /// slot indices, ascending. Records their positions in <paramref name="map"/>; the caller moves the slots.
    /// </summary>
    public int[][] Choose(IKvKeyReader keys, KvSlotMap map, int length, int promptLength, int cache)
    {
        int keep = Options.KeepTokens(promptLength);
        if (cache <= keep)
        {
            throw new InvalidOperationException($"a cache of {cache} tokens needs no compression to {keep}");
        }

        int[][] kept = Select(keys, map, length, promptLength, cache, keep);
        var positions = new int[NumGroups][];
        for (int group = 0; group < NumGroups; group++)
        {
            positions[group] = new int[keep];
            for (int i = 0; i < keep; i++)
            {
                positions[group][i] = map.Position(group, kept[group][i]);
            }
        }

        map.Compacted(positions, length);
        return kept;
    }

    /// <summary>Per group (compressed layer × KV head), the kept slot indices in ascending order.</summary>
    private int[][] Select(IKvKeyReader reader, KvSlotMap map, int length, int promptLength, int cache, int keep)
    {
        Grow(cache);
        var kept = new int[NumGroups][];
        for (int head = 0; head < _layout.Heads; head++)
        {
            Span<float> mean = _mean.AsSpan(0, cache);
            mean.Clear();
            for (int c = 0; c < _compressedLayers.Length; c++)
            {
                int group = c * _layout.Heads + head;
                Span<int> positions = _positions.AsSpan(0, cache);
                map.Fill(group, positions);
                Span<float> scores = _scores.AsSpan(0, cache);
                Policy.Score(new KvHeadKeys(_compressedLayers[c], head, reader.Read(_compressedLayers[c], head, cache, _keys.AsSpan(0, cache * _layout.HeadDim)), _layout.HeadDim, positions, length), scores);
                if (Options.PerLayer)
                {
                    kept[group] = Choose(scores, positions, length, promptLength, keep);
                    continue;
                }

                for (int slot = 0; slot < cache; slot++)
                {
                    mean[slot] += scores[slot] / _compressedLayers.Length;
                }
            }

            if (!Options.PerLayer)
            {
                // Every compressed layer of this head holds the same tokens in the same slots, so group 0's positions speak for all.
                map.Fill(head, _positions.AsSpan(0, cache));
                int[] chosen = Choose(mean, _positions.AsSpan(0, cache), length, promptLength, keep);
                for (int c = 0; c < _compressedLayers.Length; c++)
                {
                    kept[c * _layout.Heads + head] = chosen;
                }
            }
        }

        return kept;
    }

    /// <summary>The protected slots, then the best-scored others until <paramref name="keep"/>, returned in slot order.</summary>
    private int[] Choose(ReadOnlySpan<float> scores, ReadOnlySpan<int> positions, int length, int promptLength, int keep)
    {
        int cache = scores.Length, numProtected = 0, numCandidates = 0;
        for (int slot = 0; slot < cache; slot++)
        {
            int position = positions[slot];
            _protected[slot] = position >= length - Options.ProtectRecent || (Options.ProtectPrompt && position < promptLength);
            numProtected += _protected[slot] ? 1 : 0;
        }

        if (numProtected > keep)
        {
            throw new InvalidOperationException($"{numProtected} protected tokens exceed the {keep} a compression keeps");
        }

        Span<int> candidates = _order.AsSpan(0, cache);
        for (int slot = 0; slot < cache; slot++)
        {
            if (!_protected[slot])
            {
                candidates[numCandidates++] = slot;
            }
        }

        // Highest score first (ascending negated scores).
        Span<float> sortKeys = _sortKeys.AsSpan(0, numCandidates);
        for (int i = 0; i < numCandidates; i++)
        {
            sortKeys[i] = -scores[candidates[i]];
        }

        sortKeys.Sort(candidates[..numCandidates]);
        for (int i = 0; i < keep - numProtected; i++)
        {
            _protected[candidates[i]] = true;
        }

        var chosen = new int[keep];
        for (int slot = 0, n = 0; slot < cache; slot++)
        {
            if (_protected[slot])
            {
                chosen[n++] = slot;
            }
        }

        return chosen;
    }

    /// <summary>A compressed row's keys, read from the batch-1 (or batch-row) tensors of the single-sequence path.</summary>
    private sealed class RowKeys(KvCompressor owner, KvRowSource source) : IKvKeyReader
    {
        public ReadOnlySpan<float> Read(int layer, int head, int slots, Span<float> scratch) => owner.ReadKeys(source, layer, head, slots, scratch);
    }

    /// <summary>Head <paramref name="head"/>'s keys of <paramref name="layer"/> as float32 <c>[cache, head_dim]</c>.</summary>
    private ReadOnlySpan<float> ReadKeys(KvRowSource source, int layer, int head, int cache, Span<float> scratch)
    {
        KvCopy.CacheView view = KvTensors.View(source.Keys[layer], _layout);
        int elements = cache * _layout.HeadDim;
        ReadOnlySpan<byte> bytes = view.Bytes.Slice(checked((int)view.Offset(source.Row, head, view.Slots - cache)), elements * _layout.ElementBytes);
        if (_layout.ElementType == TensorElementType.Float)
        {
            return MemoryMarshal.Cast<byte, float>(bytes);
        }

        ReadOnlySpan<Half> half = MemoryMarshal.Cast<byte, Half>(bytes);
        Span<float> widened = scratch[..elements];
        for (int i = 0; i < elements; i++)
        {
            widened[i] = (float)half[i];
        }

        return widened;
    }

    /// <summary>
    /// A batch-1 tensor of <paramref name="layer"/>: the kept slots of each head when
    /// <paramref name="kept"/> is given, otherwise the layer's last slots unchanged.
    /// </summary>
    private OrtValue Copy(OrtValue sourceValue, int row, int cache, int layer, int[][]? kept, int keep)
    {
        int slots = kept is null ? _layout.SlotsOf(layer, cache) : keep;
        OrtValue value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, _layout.ElementType, [1, _layout.Heads, slots, _layout.HeadDim]);
        KvCopy.CacheView source = KvTensors.View(sourceValue, _layout), target = KvTensors.View(value, _layout);
        if (kept is null)
        {
            KvCopy.Slots(source, row, source.Slots - slots, target, 0, 0, slots);
            return value;
        }

        int first = source.Slots - cache, bytes = _layout.HeadSlotBytes;
        for (int head = 0; head < _layout.Heads; head++)
        {
            int[] chosen = kept[head];
            for (int i = 0; i < chosen.Length; i++)
            {
                source.Bytes.Slice(checked((int)source.Offset(row, head, first + chosen[i])), bytes)
                    .CopyTo(target.Bytes.Slice(checked((int)target.Offset(0, head, i)), bytes));
            }
        }

        return value;
    }

    private void Grow(int cache)
    {
        if (_scores.Length >= cache)
        {
            return;
        }

        int capacity = cache + cache / 4;
        (_scores, _mean, _sortKeys) = (new float[capacity], new float[capacity], new float[capacity]);
        (_positions, _order, _protected) = (new int[capacity], new int[capacity], new bool[capacity]);
        _keys = new float[capacity * _layout.HeadDim];
    }
}
