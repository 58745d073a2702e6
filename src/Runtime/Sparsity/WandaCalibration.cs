using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Sparsity;

/// <summary>
/// Wanda's input-feature norms ‖X_j‖₂ over calibration tokens: the MatMul inputs become
/// extra graph outputs of a copy of the model, which runs on the text in chunks with an
/// empty KV cache. The copy reads the original weights in place (no second data file).
/// </summary>
public static class WandaCalibration
{
    /// <summary>128 tokens per run keeps the tapped activations (≈ 26 layers × 4 × 128 × 6912 floats at most) under 400 MB.</summary>
    public const int ChunkTokens = 128;

    /// <summary>Per tapped input name, the L2 norm of each feature over every calibration token.</summary>
    public static Dictionary<string, float[]> FeatureNorms(string onnxPath, ModelProto model, IEnumerable<string> inputs, IReadOnlyList<int> tokens, int threads = 0)
    {
        if (tokens.Count == 0)
        {
            throw new ArgumentException("the calibration text has no tokens", nameof(tokens));
        }

        string[] taps = [.. inputs.Distinct()];
        ModelProto tapped = model.Clone();
        foreach (string tap in taps)
        {
            GraphEdits.AddOutput(tapped.Graph, tap, TensorProto.Types.DataType.Float);
        }

        using var options = new SessionOptions { IntraOpNumThreads = threads };
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(onnxPath))!);
        using var session = new InferenceSession(tapped.ToByteArray(), options);
        var sums = new Dictionary<string, double[]>();
        for (int start = 0; start < tokens.Count; start += ChunkTokens)
        {
            int count = Math.Min(ChunkTokens, tokens.Count - start);
            Accumulate(session, taps, tokens.Skip(start).Take(count).Select(id => (long)id).ToArray(), sums);
        }

        return sums.ToDictionary(pair => pair.Key, pair => pair.Value.Select(sum => (float)Math.Sqrt(sum)).ToArray());
    }

    private static void Accumulate(InferenceSession session, string[] taps, long[] ids, Dictionary<string, double[]> sums)
    {
        var names = new List<string>();
        var values = new List<OrtValue>();
        try
        {
            foreach (var (name, meta) in session.InputMetadata)
            {
                names.Add(name);
                values.Add(Feed(name, meta, ids));
            }

            using var outputs = session.Run(new RunOptions(), names, values, taps);
            for (int i = 0; i < taps.Length; i++)
            {
                AddSquares(outputs[i], sums, taps[i]);
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

    private static void AddSquares(OrtValue output, Dictionary<string, double[]> sums, string name)
    {
        long[] shape = output.GetTensorTypeAndShape().Shape;
        int features = checked((int)shape[^1]);
        if (!sums.TryGetValue(name, out double[]? sum))
        {
            sums[name] = sum = new double[features];
        }

        ReadOnlySpan<float> data = output.GetTensorDataAsSpan<float>();
        for (int row = 0; row < data.Length / features; row++)
        {
            ReadOnlySpan<float> x = data.Slice(row * features, features);
            for (int j = 0; j < features; j++)
            {
                sum[j] += (double)x[j] * x[j];
            }
        }
    }

    /// <summary>One prompt of <paramref name="ids"/> at positions 0…S−1 with empty caches, for the decoder signature of docs/models.md.</summary>
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

        if (meta.Dimensions.Length == 0 && meta.ElementDataType == TensorElementType.Int64)
        {
            return OrtValue.CreateTensorValueFromMemory(new long[] { 1 }, []);  // num_logits_to_keep
        }

        if (meta.Dimensions.Length == 4)
        {
            // past_key_values.*: batch 1, no past tokens; heads and head size as declared.
            long[] shape = [1, meta.Dimensions[1], 0, meta.Dimensions[3]];
            return OrtValue.CreateAllocatedTensorValue(OrtAllocator.DefaultInstance, meta.ElementDataType, shape);
        }

        throw new InvalidOperationException($"calibration cannot feed the model input '{name}'; it expects a Hugging Face decoder (input_ids, attention_mask, position_ids, past_key_values.*)");
    }
}
