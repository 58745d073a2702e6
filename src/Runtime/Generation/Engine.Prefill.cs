using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Generation;

public sealed partial class Engine
{
    private readonly PrefillState _prefill;
    private readonly List<Sequence> _group = [];

    /// <summary>Token, mask and position buffers for prefill calls, made once.</summary>
    private sealed class PrefillState
    {
        public PrefillState(int tokensPerCall, int contextLength)
        {
            Tokens = new long[tokensPerCall];
            Mask = new long[tokensPerCall];
            GroupPositions = new long[tokensPerCall];
            Ones = new long[contextLength];
            Positions = new long[contextLength];
            Array.Fill(Ones, 1L);
            for (int i = 0; i < contextLength; i++)
            {
                Positions[i] = i;
            }
        }

        public long[] Tokens { get; }
        public long[] Mask { get; }
        public long[] GroupPositions { get; }
        public long[] Ones { get; }
        public long[] Positions { get; }
    }

    private int PrefillChunk(int maxTokensPerStep)
    {
        int limit = _layout.NumTrimmedLayers > 0 ? Math.Min(maxTokensPerStep, _layout.SlidingSlots) : maxTokensPerStep;
        return Math.Max(limit / BlockTokens, 1) * BlockTokens;
    }

    /// <summary>
    /// Reads up to <see cref="EngineOptions.MaxPrefillTokensPerStep"/> prompt tokens. Fresh
    /// prompts that fit one chunk go together in one call, left-padded (padding before every
    /// token of a row is harmless, even to a sliding layer's trimmed present). Longer or
    /// partly cached prompts go one per call: padding between a row's past and its new tokens
    /// would push real keys out of a sliding layer's window. A sequence whose prompt is done
    /// samples its first token and joins the decode batch.
    /// </summary>
    private void Prefill()
    {
        int budget = _options.MaxPrefillTokensPerStep;
        budget -= PrefillFreshGroup(budget);
        for (int i = 0; i < _scheduler.Prefilling.Count && budget > 0;)
        {
            Sequence sequence = _scheduler.Prefilling[i];
            int count = Math.Min(sequence.PromptLength - sequence.Length, ChunkTokens);
            if (count > budget && budget < ChunkTokens)
            {
                count = budget >= BlockTokens ? budget / BlockTokens * BlockTokens : budget;
            }

            count = Math.Min(count, RoomFor(sequence));

            RunChunk(sequence, count);
            budget -= count;
            if (sequence.Length < sequence.PromptLength)
            {
                i++;
                continue;
            }

            StartDecoding(sequence, sequence.Prefill!.Outputs.Logits(0, 0));
        }
    }

    /// <summary>Prefills, in one call, the fresh prompts that fit one chunk and the budget; returns the tokens it spent (padding included).</summary>
    private int PrefillFreshGroup(int budget)
    {
        _group.Clear();
        int longest = 0;
        foreach (Sequence sequence in _scheduler.Prefilling)
        {
            if (!sequence.HasLookedUpPrefix)
            {
                RestorePrefix(sequence);
            }

            int length = sequence.PromptLength;
            if (sequence.Length == 0 && sequence.Prefill is null && length <= ChunkTokens && length <= sequence.CacheCap
                && (_group.Count + 1) * Math.Max(longest, length) <= budget)
            {
                _group.Add(sequence);
                longest = Math.Max(longest, length);
            }
        }

        if (_group.Count < 2)
        {
            // One fresh prompt is the one-row path's case: no padding, no group.
            return 0;
        }

        RunGroup(_group, longest);
        return _group.Count * longest;
    }

    /// <summary>Prefill calls made so far (tests check that fresh prompts share one).</summary>
    internal int NumPrefillCalls { get; private set; }

    private void RunGroup(List<Sequence> group, int width)
    {
        NumPrefillCalls++;
        int rows = group.Count;
        for (int r = 0; r < rows; r++)
        {
            IReadOnlyList<int> prompt = group[r].Request.PromptIds;
            int padding = width - prompt.Count;
            Span<long> tokens = _prefill.Tokens.AsSpan(r * width, width), mask = _prefill.Mask.AsSpan(r * width, width);
            Span<long> positions = _prefill.GroupPositions.AsSpan(r * width, width);
            tokens[..padding].Fill(_model.Generation.PadTokenId);
            mask[..padding].Clear();
            positions[..padding].Clear();
            mask[padding..].Fill(1L);
            for (int t = 0; t < prompt.Count; t++)
            {
                tokens[padding + t] = prompt[t];
                positions[padding + t] = t;
            }
        }

        OrtValue[] empty = EmptyPasts(rows);
        DecoderOutputs outputs;
        try
        {
            int size = rows * width;
            outputs = _runner.Run(new DecoderBatch(rows, width, _prefill.Tokens.AsMemory(0, size), _prefill.Mask.AsMemory(0, size),
                _prefill.GroupPositions.AsMemory(0, size), empty[.._layout.Layers], empty[_layout.Layers..]) { LastLogitsOnly = true });
        }
        finally
        {
            DisposeAll(empty);
        }

        var shared = new PrefillCache(outputs, rows);
        for (int r = 0; r < rows; r++)
        {
            Sequence sequence = group[r];
            _prefixCache?.Store(sequence.BlockKeys, 0, sequence.PromptLength, outputs.PresentKeys, outputs.PresentValues, r);
            sequence.SetPrefill(shared, r);
            sequence.Advance(sequence.PromptLength);
        }

        foreach (Sequence sequence in group)
        {
            StartDecoding(sequence, outputs.Logits(sequence.PrefillRow, 0));
        }
    }

    private void StartDecoding(Sequence sequence, ReadOnlySpan<float> logits)
    {
        _scheduler.Prefilling.Remove(sequence);
        sequence.Status = SequenceStatus.Decoding;
        _scheduler.Decoding.Add(sequence);
        _decode.RowsChanged = true;
        _telemetry.PrefillDone(sequence);
        Accept(sequence, logits);
    }

    /// <summary>One call over the next <paramref name="count"/> prompt tokens of <paramref name="sequence"/>.</summary>
    private void RunChunk(Sequence sequence, int count)
    {
        NumPrefillCalls++;
        int start = sequence.Length, cached = sequence.CacheLength;
        for (int t = 0; t < count; t++)
        {
            _prefill.Tokens[t] = sequence.Request.PromptIds[start + t];
        }

        OrtValue[]? empty = sequence.Prefill is null ? EmptyPasts(1) : null;
        IReadOnlyList<OrtValue> pastKeys = sequence.Prefill?.Outputs.PresentKeys ?? empty![.._layout.Layers];
        IReadOnlyList<OrtValue> pastValues = sequence.Prefill?.Outputs.PresentValues ?? empty![_layout.Layers..];
        try
        {
            var batch = new DecoderBatch(1, count, _prefill.Tokens.AsMemory(0, count), _prefill.Ones.AsMemory(0, cached + count),
                _prefill.Positions.AsMemory(start, count), pastKeys, pastValues) { LastLogitsOnly = true };
            DecoderOutputs outputs = _runner.Run(batch);
            // Once the cache has evicted tokens, the chunk's keys and values were computed over a
            // compressed past: stored under the token ids alone, they would be served to a request
            // with another policy or budget, or none (another tenant). Only blocks over a full past are shared.
            if (cached == start)
            {
                _prefixCache?.Store(sequence.BlockKeys, start, start + count, outputs.PresentKeys, outputs.PresentValues, 0);
            }

            sequence.SetPrefill(new PrefillCache(outputs, 1), 0);
            sequence.Advance(count);
        }
        finally
        {
            DisposeAll(empty);
        }
    }

    private OrtValue[] EmptyPasts(int rows)
    {
        var empty = new OrtValue[2 * _layout.Layers];
        for (int i = 0; i < empty.Length; i++)
        {
            empty[i] = _runner.EmptyPast(rows);
        }

        return empty;
    }

    /// <summary>
    /// Starts <paramref name="sequence"/> from the longest cached prefix of its prompt, in whole
    /// blocks and short of the last prompt token (whose logits the first sample needs).
    /// </summary>
    private void RestorePrefix(Sequence sequence)
    {
        sequence.HasLookedUpPrefix = true;
        if (_prefixCache is null)
        {
            return;
        }

        ReadOnlySpan<int> prompt = (int[])sequence.Request.PromptIds;
        sequence.BlockKeys = _prefixCache.BlockKeys(prompt);
        // A compressed sequence resumes from at most its cache's cap, so its cache never exceeds it.
        int maxBlocks = Math.Min(prompt.Length - 1, sequence.CacheCap) / BlockTokens;
        List<byte[]> blocks = _prefixCache.Lookup(sequence.BlockKeys, maxBlocks);
        if (blocks.Count == 0)
        {
            return;
        }

        int length = blocks.Count * BlockTokens;
        var values = new OrtValue[2 * _layout.Layers];
        for (int layer = 0; layer < _layout.Layers; layer++)
        {
            int slots = _layout.SlotsOf(layer, length);
            values[layer] = Restored(blocks, layer, slots, isKey: true);
            values[_layout.Layers + layer] = Restored(blocks, layer, slots, isKey: false);
        }

        sequence.SetPrefill(new PrefillCache(DecoderOutputs.FromCaches(values[.._layout.Layers], values[_layout.Layers..]), 1), 0);
        sequence.Advance(length);
        sequence.CachedTokens = length;
    }

    private OrtValue Restored(List<byte[]> blocks, int layer, int slots, bool isKey)
    {
        OrtValue value = OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, _layout.ElementType, [1, _layout.Heads, slots, _layout.HeadDim]);
        _prefixCache!.Restore(blocks, KvTensors.View(value, _layout), layer, isKey);
        return value;
    }

    private static void DisposeAll(OrtValue[]? values)
    {
        foreach (OrtValue value in values ?? [])
        {
            value.Dispose();
        }
    }
}
