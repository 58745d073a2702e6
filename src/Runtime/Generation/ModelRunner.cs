using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Generation;

/// <summary>
/// Runs a <see cref="DecoderModel"/>'s graph on a <see cref="DecoderBatch"/>, one ONNX Runtime
/// call per step. Input names and the value array are built once; one runner serves one
/// thread (the engine's step loop).
/// </summary>
public sealed class ModelRunner : IDisposable
{
    private readonly DecoderModel _model;
    private readonly string[] _inputNames;
    private readonly OrtValue[] _inputs;
    private readonly string[] _outputNames;
    private readonly OrtValue[] _outputs;
    private readonly KvLayer[] _firstOfEachKind;
    private readonly int _firstPast;
    private static readonly long[] ScalarShape = [];
    private static readonly long[] VectorShape = [1];
    private readonly long[] _logitsToKeep = new long[1];
    private readonly RunOptions _runOptions = new();

    public ModelRunner(DecoderModel model)
    {
        if (model.Signature.IsPaged)
        {
            throw new ArgumentException($"{model.OnnxPath} was loaded for the paged KV cache; the single-sequence runner needs the graph as exported", nameof(model));
        }

        _model = model;
        DecoderSignature signature = model.Signature;
        string?[] optional = [signature.AttentionMask, signature.PositionIds, signature.NumLogitsToKeep];
        _inputNames = [signature.InputIds, .. optional.OfType<string>(),
            .. signature.Layers.SelectMany(layer => new[] { layer.PastKey, layer.PastValue })];
        _firstPast = _inputNames.Length - 2 * signature.Layers.Count;
        _inputs = new OrtValue[_inputNames.Length];
        _outputNames = [signature.Logits, .. signature.Layers.SelectMany(layer => new[] { layer.PresentKey, layer.PresentValue })];
        _outputs = new OrtValue[_outputNames.Length];
        _firstOfEachKind = FirstOfEachKind(signature.Layers);
    }

    /// <summary>Empty caches <c>[B, Hkv, 0, D]</c> for a first call.</summary>
    public OrtValue EmptyPast(int batchSize)
    {
        var signature = _model.Signature;
        long[] shape = [batchSize, signature.KvHeads, 0, signature.HeadDim];
        return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, signature.KvType, shape);
    }

    /// <exception cref="ArgumentException">The batch's buffers or caches disagree in size.</exception>
    public DecoderOutputs Run(DecoderBatch batch) =>
        new(Execute(batch, null)!, _model.Signature.Layers.Count);

    /// <summary>
    /// Runs <paramref name="batch"/> with ONNX Runtime writing into caller-made outputs, shaped
    /// <c>[B, 1 or S, V]</c> and <c>[B, Hkv, slots, D]</c>: no allocation for the results.
    /// </summary>
    public void RunInto(DecoderBatch batch, OrtValue logits, IReadOnlyList<OrtValue> presentKeys, IReadOnlyList<OrtValue> presentValues)
    {
        _outputs[0] = logits;
        for (int layer = 0; layer < presentKeys.Count; layer++)
        {
            _outputs[1 + 2 * layer] = presentKeys[layer];
            _outputs[2 + 2 * layer] = presentValues[layer];
        }

        try
        {
            Execute(batch, _outputs);
        }
        finally
        {
            Array.Clear(_outputs);
        }
    }

    private IDisposableReadOnlyCollection<OrtValue>? Execute(DecoderBatch batch, OrtValue[]? outputs)
    {
        Validate(batch);
        DecoderSignature signature = _model.Signature;
        long[] tokenShape = [batch.BatchSize, batch.NewTokens];
        int owned = 0;
        try
        {
            _inputs[owned++] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch.InputIds, tokenShape);
            if (signature.AttentionMask is not null)
            {
                _inputs[owned++] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch.AttentionMask, [batch.BatchSize, batch.TotalLength]);
            }

            if (signature.PositionIds is not null)
            {
                _inputs[owned++] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, batch.PositionIds, tokenShape);
            }

            if (signature.NumLogitsToKeep is not null)
            {
                _logitsToKeep[0] = batch.LastLogitsOnly ? 1 : 0;
                _inputs[owned++] = OrtValue.CreateTensorValueFromMemory(_logitsToKeep, signature.NumLogitsToKeepIsVector ? VectorShape : ScalarShape);
            }

            for (int layer = 0; layer < signature.Layers.Count; layer++)
            {
                _inputs[_firstPast + 2 * layer] = batch.PastKeys[layer];
                _inputs[_firstPast + 2 * layer + 1] = batch.PastValues[layer];
            }

            if (outputs is not null)
            {
                _model.Session.Run(_runOptions, _inputNames, _inputs, _outputNames, outputs);
                return null;
            }

            return _model.Session.Run(_runOptions, _inputNames, _inputs, _outputNames);
        }
        finally
        {
            // Inputs are read during Run; outputs never alias them. Past values belong to the caller.
            for (int i = 0; i < owned; i++)
            {
                _inputs[i].Dispose();
            }

            Array.Clear(_inputs);
        }
    }

    /// <summary>
    /// Checks sizes before ONNX Runtime does, with a message instead of a shape error. Runs every
    /// step, so each message is formatted only when its check fails.
    /// </summary>
    private void Validate(DecoderBatch batch)
    {
        int b = batch.BatchSize, s = batch.NewTokens;
        if (b <= 0 || s <= 0)
        {
            throw Invalid($"a batch needs at least one row and one token, got {b} × {s}");
        }

        if (batch.InputIds.Length != b * s || batch.PositionIds.Length != b * s)
        {
            throw Invalid($"input ids ({batch.InputIds.Length}) and positions ({batch.PositionIds.Length}) must hold {b} × {s} values");
        }

        if (batch.AttentionMask.Length % b != 0 || batch.TotalLength < s)
        {
            throw Invalid($"the attention mask ({batch.AttentionMask.Length} values) must hold {b} rows of at least {s}");
        }

        int layers = _model.Signature.Layers.Count;
        if (batch.PastKeys.Count != layers || batch.PastValues.Count != layers)
        {
            throw Invalid($"the model has {layers} layers of past keys and values");
        }

        // Sliding caches are the right-aligned tail of the global layout (see Gemma3Graph).
        long pastLength = batch.TotalLength - s;
        foreach (KvLayer layer in _firstOfEachKind)
        {
            long length = batch.PastKeys[layer.Index].GetTensorTypeAndShape().Shape[2];
            bool fits = layer.HasOwnLength ? length <= pastLength : length == pastLength || _model.Signature.AttentionMask is null;
            if (!fits)
            {
                throw Invalid($"layer {layer.Index} holds {length} past slots but the attention mask implies {pastLength}"
                    + (layer.HasOwnLength ? " or fewer (a sliding cache cannot outlive the global one)" : ""));
            }
        }
    }

    /// <summary>The first full-attention layer and the first layer with its own (sliding) length: one of each kind to check.</summary>
    private static KvLayer[] FirstOfEachKind(IReadOnlyList<KvLayer> layers)
    {
        KvLayer? global = layers.FirstOrDefault(layer => !layer.HasOwnLength);
        KvLayer? sliding = layers.FirstOrDefault(layer => layer.HasOwnLength);
        return new[] { global, sliding }.OfType<KvLayer>().ToArray();
    }

    private static ArgumentException Invalid(string message) => new(message, nameof(DecoderBatch));

    public void Dispose() => _runOptions.Dispose();
}
