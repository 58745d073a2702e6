using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

public class GraphSmokeTests
{
    [Fact]
    public void TinyPrefillRuns()
    {
        string dir = Path.Combine(Path.GetTempPath(), "serving-smoke-" + Guid.NewGuid().ToString("N"));
        var config = Gemma3Presets.Tiny;
        Gemma3ModelWriter.WriteRandom(dir, config, 1);
        using var session = new InferenceSession(Path.Combine(dir, "onnx/model.onnx"));
        int s = 20;
        var inputs = new List<NamedOnnxValue>
        {
            NamedOnnxValue.CreateFromTensor("input_ids", new DenseTensor<long>(Enumerable.Range(5, s).Select(i => (long)i).ToArray(), [1, s])),
            NamedOnnxValue.CreateFromTensor("attention_mask", new DenseTensor<long>(Enumerable.Repeat(1L, s).ToArray(), [1, s])),
            NamedOnnxValue.CreateFromTensor("position_ids", new DenseTensor<long>(Enumerable.Range(0, s).Select(i => (long)i).ToArray(), [1, s])),
        };
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            inputs.Add(NamedOnnxValue.CreateFromTensor($"past_key_values.{i}.key", new DenseTensor<float>([1, config.NumKeyValueHeads, 0, config.HeadDim])));
            inputs.Add(NamedOnnxValue.CreateFromTensor($"past_key_values.{i}.value", new DenseTensor<float>([1, config.NumKeyValueHeads, 0, config.HeadDim])));
        }

        using var results = session.Run(inputs);
        var logits = results.First(r => r.Name == "logits").AsTensor<float>();
        Assert.Equal([1, s, config.VocabSize], logits.Dimensions.ToArray());
        Assert.All(logits.ToArray(), v => Assert.True(float.IsFinite(v)));
        var p0 = results.First(r => r.Name == "present.0.key").AsTensor<float>();
        Assert.Equal(config.SlidingWindow - 1, p0.Dimensions[2]);
        var p1 = results.First(r => r.Name == "present.1.key").AsTensor<float>();
        Assert.Equal(s, p1.Dimensions[2]);
        Directory.Delete(dir, true);
    }
}
