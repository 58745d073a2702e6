using Microsoft.ML.OnnxRuntime;
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

        using var decoder = new TappedDecoder(onnxPath, model, inputs, threads);
        var sums = new Dictionary<string, double[]>();
        for (int start = 0; start < tokens.Count; start += ChunkTokens)
        {
            int count = Math.Min(ChunkTokens, tokens.Count - start);
            decoder.Run(tokens.Skip(start).Take(count).Select(id => (long)id).ToArray(), (tap, value) => AddSquares(value, sums, tap));
        }

        return sums.ToDictionary(pair => pair.Key, pair => pair.Value.Select(sum => (float)Math.Sqrt(sum)).ToArray());
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
}
