using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Quantization;

namespace Serving.Runtime.Tests.Quantization;

/// <summary>
/// What the variants count on ONNX Runtime to do at load (ORT_ENABLE_ALL, as DecoderModel opens
/// them): fold the Unsqueeze that gives GatherBlockQuantized its rank-3 scales, and the fp16
/// weights' Casts, so neither runs per step. Read from the optimized graph ONNX Runtime saves.
/// </summary>
public sealed class OnnxRuntimeFoldingTests(QuantizedModelFixture fixture) : IClassFixture<QuantizedModelFixture>
{
    private static GraphProto Optimized(string onnxPath, string directory)
    {
        string optimized = Path.Combine(directory, "optimized.onnx");
        using var options = new SessionOptions { GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL, OptimizedModelFilePath = optimized };
        options.AddSessionConfigEntry("session.optimized_model_external_initializers_file_name", "optimized.onnx_data");
        using (new InferenceSession(onnxPath, options))
        {
        }

        return OnnxModelFile.Load(optimized).Graph;
    }

    [Fact]
    public void TheGathersScalesAreAFoldedInitializer()
    {
        using var temp = new TempFolder();
        GraphProto graph = Optimized(Path.Combine(fixture.Folders["q4"], "onnx/model_q4.onnx"), temp.Path);
        NodeProto gather = Assert.Single(graph.Node, n => n.OpType == "GatherBlockQuantized");
        Assert.Contains(graph.Initializer, t => t.Name == gather.Input[2]);
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Unsqueeze" && n.Input[0].EndsWith("_scales", StringComparison.Ordinal));
    }

    [Fact]
    public void TheFp16WeightsCastsAreFolded()
    {
        using var temp = new TempFolder();
        GraphProto graph = Optimized(Path.Combine(fixture.Folders["fp16"], "onnx/model_fp16.onnx"), temp.Path);
        Assert.DoesNotContain(graph.Node, n => n.OpType == "Cast" && n.Input.Any(input => input.EndsWith("_fp16", StringComparison.Ordinal)));
        Assert.DoesNotContain(graph.Initializer, t => t.Name == QuantizeRewrite.Fp16Name("model.embed_tokens.weight"));
    }
}
