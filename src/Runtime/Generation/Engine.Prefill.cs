using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Generation;

public sealed partial class Engine
{
    private readonly PrefillState _prefill;

    /// <summary>Token, mask and position buffers for one-row prefill calls, made once.</summary>
    private sealed class PrefillState
    {
        public PrefillState(int chunkTokens, int contextLength)
        {
            Tokens = new long[chunkTokens];
            Ones = new long[contextLength];
            Positions = new long[contextLength];
            Array.Fill(Ones, 1L);
            for (int i = 0; i < contextLength; i++)
            {
                Positions[i] = i;
            }
        }

        public long[] Tokens { get; }
        public long[] Ones { get; }
        public long[] Positions { get; }
    }

    private int PrefillChunk(int maxTokensPerStep)
    {
        int limit = _layout.NumTrimmedLayers > 0 ? Math.Min(maxTokensPerStep, _layout.SlidingSlots) : maxTokensPerStep;
        return Math.Max(limit / BlockTokens, 1) * BlockTokens;
    }

    /// <summary>
    /// Reads up to <see cref="EngineOptions.MaxPrefillTokensPerStep"/> prompt tokens, one
    /// sequence per call: rows of different lengths in one call would need padding inside a
    /// row, which a sliding layer's trimmed present cannot hold. A sequence whose prompt is
    /// done samples its first token and joins the decode batch.
    /// </summary>
    private void Prefill()
    {
        int budget = _options.MaxPrefillTokensPerStep;
        for (int i = 0; i < _scheduler.Prefilling.Count && budget > 0;)
        {
            Sequence sequence = _scheduler.Prefilling[i];
            if (sequence.Length == 0 && sequence.PrefillOutputs is null)
            {
                RestorePrefix(sequence);
            }

            int count = Math.Min(sequence.PromptLength - sequence.Length, ChunkTokens);
            if (count > budget && budget < ChunkTokens)
            {
                count = budget >= BlockTokens ? budget / BlockTokens * BlockTokens : budget;
            }

            RunChunk(sequence, count);
            budget -= count;
            if (sequence.Length < sequence.PromptLength)
            {
                i++;
                continue;
            }

            _scheduler.Prefilling.RemoveAt(i);
            sequence.Status = SequenceStatus.Decoding;
            _scheduler.Decoding.Add(sequence);
            _decode.RowsChanged = true;
            DecoderOutputs outputs = sequence.PrefillOutputs!;
            Accept(sequence, outputs.Logits(0, outputs.LogitPositions - 1));
        }
    }

    /// <summary>One call over the next <paramref name="count"/> prompt tokens of <paramref name="sequence"/>.</summary>
    private void RunChunk(Sequence sequence, int count)
    {
        int start = sequence.Length;
        for (int t = 0; t < count; t++)
        {
            _prefill.Tokens[t] = sequence.Request.PromptIds[start + t];
        }

        IReadOnlyList<OrtValue> pastKeys, pastValues;
        OrtValue[]? empty = null;
        if (sequence.PrefillOutputs is { } previous)
        {
            (pastKeys, pastValues) = (previous.PresentKeys, previous.PresentValues);
        }
        else
        {
            empty = new OrtValue[2 * _layout.Layers];
            for (int i = 0; i < empty.Length; i++)
            {
                empty[i] = _runner.EmptyPast(1);
            }

            (pastKeys, pastValues) = (empty[.._layout.Layers], empty[_layout.Layers..]);
        }

        try
        {
            var batch = new DecoderBatch(1, count, _prefill.Tokens.AsMemory(0, count), _prefill.Ones.AsMemory(0, start + count),
                _prefill.Positions.AsMemory(start, count), pastKeys, pastValues) { LastLogitsOnly = true };
            DecoderOutputs outputs = _runner.Run(batch);
            _prefixCache?.Store(sequence.BlockKeys, start, start + count, outputs.PresentKeys, outputs.PresentValues);
            sequence.ReleasePrefill();
            sequence.PrefillOutputs = outputs;
            sequence.Length = start + count;
        }
        finally
        {
            DisposeAll(empty);
        }
    }

    /// <summary>
    /// Starts <paramref name="sequence"/> from the longest cached prefix of its prompt, in whole
    /// blocks and short of the last prompt token (whose logits the first sample needs).
    /// </summary>
    private void RestorePrefix(Sequence sequence)
    {
        if (_prefixCache is null)
        {
            return;
        }

        ReadOnlySpan<int> prompt = (int[])sequence.Request.PromptIds;
        sequence.BlockKeys = _prefixCache.BlockKeys(prompt);
        List<byte[]> blocks = _prefixCache.Lookup(sequence.BlockKeys, (prompt.Length - 1) / BlockTokens);
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

        sequence.PrefillOutputs = DecoderOutputs.FromCaches(values[.._layout.Layers], values[_layout.Layers..]);
        sequence.Length = sequence.CachedTokens = length;
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
