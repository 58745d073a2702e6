using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>
/// A decoder whose intermediate values of interest ("taps") are extra graph outputs: a copy
/// of the model, in memory, that reads the original weights in place (no second data file).
/// Runs one prompt at a time from an empty cache; calibration tools (Wanda's feature norms,
/// TriAttention's query statistics) read the taps.
/// </summary>
public sealed class TappedDecoder : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string[] _taps;

    public TappedDecoder(string onnxPath, ModelProto model, IEnumerable<string> taps, int threads = 0)
    {
        _taps = [.. taps.Distinct()];
        ModelProto tapped = model.Clone();
        foreach (string tap in _taps)
        {
            GraphEdits.AddOutput(tapped.Graph, tap, TensorProto.Types.DataType.Float);
        }

        using var options = new SessionOptions { IntraOpNumThreads = threads };
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(onnxPath))!);
        _session = new InferenceSession(tapped.ToByteArray(), options);
    }

    public IReadOnlyList<string> Taps => _taps;

    /// <summary>Runs <paramref name="ids"/> as one prompt at positions 0…S−1; <paramref name="read"/> sees each tap's value (valid only during the call).</summary>
    public void Run(long[] ids, Action<string, OrtValue> read)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        try
        {
            foreach (var (name, meta) in _session.InputMetadata)
            {
                names.Add(name);
                values.Add(Feed(name, meta, ids));
            }

            using var outputs = _session.Run(new RunOptions(), names, values, _taps);
            for (int i = 0; i < _taps.Length; i++)
            {
                read(_taps[i], outputs[i]);
            }
        }
        finally
        {
            foreach (OrtValue value in values)
            {
                value.Dispose();
            }
        }
    }

    /// <summary>One prompt of <paramref name="ids"/> with empty caches, for the decoder signature of docs/models.md.</summary>
    private static OrtValue Feed(string name, NodeMetadata meta, long[] ids)
    {
        long length = ids.Length;
        switch (name)
        {
            case "input_ids":
                return OrtValue.CreateTensorValueFromMemory(ids, [1, length]);
            case "attention_mask":
                return OrtValue.CreateTensorValueFromMemory(Enumerable.Repeat(1L, ids.Length).ToArray(), [1, length]);
            case "position_ids":
                return OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, ids.Length).Select(p => (long)p).ToArray(), [1, length]);
        }

        if (name == "num_logits_to_keep")
        {
            // 0-d in older folders and transformers.js exports, [1] in GenAI-style ones; undeclared rank (ours) takes either.
            return OrtValue.CreateTensorValueFromMemory(new long[] { 1 }, meta.Dimensions.Length == 1 ? [1] : []);
        }

        if (meta.Dimensions.Length == 4)
        {
            // past_key_values.*: batch 1, no past tokens; heads and head size as declared.
            long[] shape = [1, meta.Dimensions[1], 0, meta.Dimensions[3]];
            return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType, shape);
        }

        throw new InvalidOperationException($"calibration cannot feed the model input '{name}'; it expects a Hugging Face decoder (input_ids, attention_mask, position_ids, past_key_values.*)");
    }

    public void Dispose() => _session.Dispose();
}
