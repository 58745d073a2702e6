using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

/// <summary>Runs a <see cref="DecoderModel"/>'s graph on a <see cref="DecoderBatch"/>, one ONNX Runtime call per step.</summary>
public sealed class ModelRunner
{
    private readonly DecoderModel _model;
    private readonly string[] _outputNames;

    public ModelRunner(DecoderModel model)
    {
        _model = model;
        var layers = model.Signature.Layers;
        _outputNames = [model.Signature.Logits, .. layers.SelectMany(layer => new[] { layer.PresentKey, layer.PresentValue })];
    }

    /// <summary>Empty caches <c>[B, Hkv, 0, D]</c> for a first call.</summary>
    public OrtValue EmptyPast(int batchSize)
    {
        var signature = _model.Signature;
        long[] shape = [batchSize, signature.KvHeads, 0, signature.HeadDim];
        return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, signature.KvType, shape);
    }

    public DecoderOutputs Run(DecoderBatch batch)
    {
        var signature = _model.Signature;
        var names = new List<string>(4 + 2 * signature.Layers.Count);
        var values = new List<OrtValue>(names.Capacity);
        var owned = new List<OrtValue>(4);
        void AddOwned(string name, OrtValue value)
        {
            owned.Add(value);
            names.Add(name);
            values.Add(value);
        }

        try
        {
            long[] tokenShape = [batch.BatchSize, batch.NewTokens];
            AddOwned(signature.InputIds, OrtValue.CreateTensorValueFromMemory(batch.InputIds, tokenShape));
            if (signature.AttentionMask is { } mask)
            {
                AddOwned(mask, OrtValue.CreateTensorValueFromMemory(batch.AttentionMask, [batch.BatchSize, batch.TotalLength]));
            }

            if (signature.PositionIds is { } positions)
            {
                AddOwned(positions, OrtValue.CreateTensorValueFromMemory(batch.PositionIds, tokenShape));
            }

            if (signature.NumLogitsToKeep is { } keep)
            {
                AddOwned(keep, OrtValue.CreateTensorValueFromMemory(new[] { batch.LastLogitsOnly ? 1L : batch.NewTokens }, []));
            }

            foreach (KvLayer layer in signature.Layers)
            {
                names.Add(layer.PastKey);
                values.Add(batch.PastKeys[layer.Index]);
                names.Add(layer.PastValue);
                values.Add(batch.PastValues[layer.Index]);
            }

            using var runOptions = new RunOptions();
            return new DecoderOutputs(_model.Session.Run(runOptions, names, values, _outputNames), signature.Layers.Count);
        }
        finally
        {
            // Inputs are copied or read during Run; outputs never alias them.
            foreach (OrtValue value in owned)
            {
                value.Dispose();
            }
        }
    }
}
