using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// Test driver for batched decoding: left-pads each step's new tokens, keeps one attention
/// mask row and one true position per sequence, and feeds each step's present caches back
/// as past. Owns the latest outputs: callers read them and must not dispose them.
/// </summary>
internal sealed class KvSession : IDisposable
{
    private readonly DecoderModel _model;
    private readonly ModelRunner _runner;
    private readonly List<long>[] _mask;
    private readonly long[] _nextPosition;
    private IReadOnlyList<OrtValue> _keys, _values;
    private readonly List<IDisposable> _owned = [];

    public KvSession(DecoderModel model, int batchSize, long firstPosition = 0)
    {
        _model = model;
        _runner = new ModelRunner(model);
        _owned.Add(_runner);
        _mask = [.. Enumerable.Range(0, batchSize).Select(_ => new List<long>())];
        _nextPosition = [.. Enumerable.Repeat(firstPosition, batchSize)];
        _keys = Own([.. model.Signature.Layers.Select(_ => _runner.EmptyPast(batchSize))]);
        _values = Own([.. model.Signature.Layers.Select(_ => _runner.EmptyPast(batchSize))]);
    }

    private int BatchSize => _mask.Length;

    public DecoderOutputs Step(int[][] newTokens)
    {
        int width = newTokens.Max(tokens => tokens.Length);
        // Padding inside a row's history would be trimmed into its sliding caches (see Gemma3Graph).
        Assert.True(_mask[0].Count == 0 || newTokens.All(tokens => tokens.Length == width),
            "after the first call every row must add the same number of tokens");
        var ids = new long[BatchSize * width];
        var positions = new long[BatchSize * width];
        for (int b = 0; b < BatchSize; b++)
        {
            int padding = width - newTokens[b].Length;
            for (int s = 0; s < width; s++)
            {
                bool real = s >= padding;
                ids[b * width + s] = real ? newTokens[b][s - padding] : 0;
                positions[b * width + s] = real ? _nextPosition[b]++ : 1;
                _mask[b].Add(real ? 1 : 0);
            }
        }

        long[] mask = [.. _mask.SelectMany(row => row)];
        var outputs = _runner.Run(new DecoderBatch(BatchSize, width, ids, mask, positions, _keys, _values));
        _owned.Add(outputs);
        (_keys, _values) = (outputs.PresentKeys, outputs.PresentValues);
        return outputs;
    }

    public long CacheLength(int layer) => _keys[layer].GetTensorTypeAndShape().Shape[2];

    /// <summary>Marks global slots as invisible without removing them (batch size 1).</summary>
    public void MaskSlots(IReadOnlyCollection<int> slots)
    {
        foreach (int slot in slots)
        {
            _mask[0][slot] = 0;
        }
    }

    /// <summary>Removes global-layer slots and their mask entries, as KV eviction does (batch size 1).</summary>
    public void DropGlobalSlots(IReadOnlyCollection<int> slots)
    {
        var keys = _keys.ToArray();
        var values = _values.ToArray();
        foreach (KvLayer layer in _model.Signature.Layers.Where(l => l.Kind == AttentionKind.Full))
        {
            keys[layer.Index] = Own([WithoutSlots(keys[layer.Index], slots)])[0];
            values[layer.Index] = Own([WithoutSlots(values[layer.Index], slots)])[0];
        }

        (_keys, _values) = (keys, values);
        var kept = _mask[0].Where((_, slot) => !slots.Contains(slot)).ToList();
        _mask[0].Clear();
        _mask[0].AddRange(kept);
    }

    private static OrtValue WithoutSlots(OrtValue cache, IReadOnlyCollection<int> slots)
    {
        long[] shape = cache.GetTensorTypeAndShape().Shape;
        int heads = (int)shape[1], length = (int)shape[2], dim = (int)shape[3];
        ReadOnlySpan<float> data = cache.GetTensorDataAsSpan<float>();
        var kept = new List<float>();
        for (int h = 0; h < heads; h++)
        {
            for (int t = 0; t < length; t++)
            {
                if (!slots.Contains(t))
                {
                    kept.AddRange(data.Slice((h * length + t) * dim, dim).ToArray());
                }
            }
        }

        return OrtValue.CreateTensorValueFromMemory(kept.ToArray(), [1, heads, length - slots.Count, dim]);
    }

    private OrtValue[] Own(OrtValue[] values)
    {
        _owned.AddRange(values);
        return values;
    }

    public void Dispose()
    {
        foreach (IDisposable owned in _owned)
        {
            owned.Dispose();
        }
    }
}
