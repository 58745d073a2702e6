using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Serving.Runtime.Generation;

/// <summary>
/// The results of one decoder call. Owns its native tensors: the present caches can be fed
/// straight back as the next call's past, so dispose these outputs only after that call.
/// </summary>
public sealed class DecoderOutputs : IDisposable
{
    private readonly IDisposable _values;
    private readonly OrtValue? _logits;
    private float[]? _widened;

    internal DecoderOutputs(IDisposableReadOnlyCollection<OrtValue> values, int layers)
    {
        _values = values;
        _logits = values[0];
        // Outputs come as logits, then key and value per layer (ModelRunner's order).
        var keys = new OrtValue[layers];
        var presentValues = new OrtValue[layers];
        for (int i = 0; i < layers; i++)
        {
            keys[i] = values[1 + 2 * i];
            presentValues[i] = values[2 + 2 * i];
        }

        (PresentKeys, PresentValues) = (keys, presentValues);
        long[] shape = _logits.GetTensorTypeAndShape().Shape;
        LogitPositions = (int)shape[1];
        VocabSize = (int)shape[2];
    }

    private DecoderOutputs(OrtValue[] keys, OrtValue[] values)
    {
        (PresentKeys, PresentValues) = (keys, values);
        _values = new DisposableList([.. keys, .. values]);
    }

    /// <summary>Caches made outside a decoder call (e.g. restored from the prefix cache), owned like a call's outputs; no logits.</summary>
    internal static DecoderOutputs FromCaches(OrtValue[] keys, OrtValue[] values) => new(keys, values);

    private sealed class DisposableList(OrtValue[] values) : IDisposable
    {
        public void Dispose()
        {
            foreach (OrtValue value in values)
            {
                value.Dispose();
            }
        }
    }

    public IReadOnlyList<OrtValue> PresentKeys { get; }
    public IReadOnlyList<OrtValue> PresentValues { get; }

    /// <summary>Positions per sequence in the logits (all new tokens, or 1 with num_logits_to_keep).</summary>
    public int LogitPositions { get; }
    public int VocabSize { get; }

    /// <summary>The logits of sequence <paramref name="batchIndex"/> at <paramref name="position"/> (of <see cref="LogitPositions"/>).</summary>
    public ReadOnlySpan<float> Logits(int batchIndex, int position)
    {
        int offset = (batchIndex * LogitPositions + position) * VocabSize;
        return AllLogits().Slice(offset, VocabSize);
    }

    private ReadOnlySpan<float> AllLogits()
    {
        if (_logits is null)
        {
            throw new InvalidOperationException("these caches come from no decoder call, so they have no logits");
        }

        if (_logits.GetTensorTypeAndShape().ElementDataType == TensorElementType.Float)
        {
            return _logits.GetTensorDataAsSpan<float>();
        }

        if (_widened is null)
        {
            ReadOnlySpan<Float16> half = _logits.GetTensorDataAsSpan<Float16>();
            _widened = new float[half.Length];
            for (int i = 0; i < half.Length; i++)
            {
                _widened[i] = (float)half[i];
            }
        }

        return _widened;
    }

    public void Dispose() => _values.Dispose();
}
