using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Models;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>The fused graph computes what the export computes, with the element-wise chains gone.</summary>
public sealed class DecoderFusionsTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private ModelProto Export() => OnnxModelFile.Load(tiny.Model.OnnxPath);

    private static int Count(ModelProto model, string opType) => model.Graph.Node.Count(node => node.OpType == opType);

    [Fact]
    public void EveryNormAndGeluOfTheExportIsFused()
    {
        ModelProto model = Export();
        int layers = tiny.Config.NumHiddenLayers;
        int norms = Count(model, "ReduceMean");

        DecoderFusions.Counts counts = DecoderFusions.Apply(model);

        Assert.Equal(layers * 6 + 1, norms); // input, post-attention, pre- and post-feedforward, q and k; the final norm
        // Each layer's two residual sums feed a norm (pre-feedforward; the next layer's input), except
        // the last one: the final norm reads the positions num_logits_to_keep slices from it.
        Assert.Equal(new DecoderFusions.Counts(norms, layers, 0, 0, SkipNorms: 2 * layers - 1), counts);
        Assert.Equal(norms - (2 * layers - 1), Count(model, "SimplifiedLayerNormalization"));
        Assert.Equal(2 * layers - 1, Count(model, "SkipSimplifiedLayerNormalization"));
        var addOutputs = model.Graph.Node.Where(node => node.OpType == "Add").SelectMany(node => node.Output).ToHashSet();
        Assert.DoesNotContain(model.Graph.Node, node => node.OpType == "SimplifiedLayerNormalization" && addOutputs.Contains(node.Input[0]));
        Assert.Equal(layers, Count(model, "FastGelu"));
        Assert.Equal(0, Count(model, "ReduceMean") + Count(model, "Sqrt") + Count(model, "Tanh"));
    }

    [Fact]
    public void ThePagedGraphAlsoLosesItsRopeChainsAndValueTransposes()
    {
        ModelProto paged = PagedAttentionRewrite.Rewrite(Export(), tiny.Config);
        int layers = tiny.Config.NumHiddenLayers;

        Assert.Equal(2 * layers, Count(paged, "RotaryEmbedding"));
        Assert.Equal(0, Count(paged, "Neg") + Count(paged, "Split") + Count(paged, "Transpose"));
        Assert.Equal(layers, Count(paged, PagedAttentionRewrite.OpType));
    }

    [Fact]
    public void FusedLogitsEqualTheExportsOnAPrompt()
    {
        int[] prompt = [2, 17, 301, 44, 9, 870, 12, 5, 66, 123, 7];
        ModelProto fused = Export();
        DecoderFusions.Apply(fused);

        float[] expected = Logits(Export(), prompt);
        float[] actual = Logits(fused, prompt);

        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-4 + 1e-4 * Math.Abs(expected[i]), $"logit {i}: {actual[i]} against {expected[i]}");
        }
    }

    [Fact]
    public void AChainThatDiffersIsLeftAsItIs()
    {
        ModelProto model = Export();
        // The first norm's ε no longer a constant: that norm stays written out, the others fuse.
        NodeProto addEps = model.Graph.Node.First(node => node.OpType == "Add"
            && model.Graph.Node.Any(sqrt => sqrt.OpType == "Sqrt" && sqrt.Input[0] == node.Output[0]));
        string constant = addEps.Input.First(input => model.Graph.Initializer.Any(tensor => tensor.Name == input));
        var identity = new NodeProto { Name = "eps_identity", OpType = "Identity" };
        identity.Input.Add(constant);
        identity.Output.Add("eps_identity_out");
        model.Graph.Node.Insert(0, identity);
        addEps.Input[addEps.Input.IndexOf(constant)] = "eps_identity_out";

        DecoderFusions.Counts counts = DecoderFusions.Apply(model);

        Assert.Equal(tiny.Config.NumHiddenLayers * 6, counts.RmsNorms);
        Assert.Equal(1, Count(model, "ReduceMean"));
        Assert.Equal(1, Count(model, "Sqrt"));
    }

    /// <summary>
    /// q/k/v and gate/up of a q4 model become one MatMulNBits each (weights concatenated along N,
    /// then a Split): two groups per layer, and the logits are those of the separate calls.
    /// </summary>
    [Fact]
    public void QuantizedSiblingsShareOneMatMulNBitsAndGiveTheSameLogits()
    {
        using var temp = new TempFolder();
        string folder = Path.Combine(temp.Path, "q4");
        Serving.Runtime.Quantization.Quantizer.Run(new Serving.Runtime.Quantization.QuantizeOptions(tiny.Folder, folder, "q4"));
        string onnx = Path.Combine(folder, "onnx", "model_q4.onnx"), directory = Path.GetDirectoryName(onnx)!;
        int[] prompt = [2, 17, 301, 44, 9, 870, 12, 5, 66, 123, 7];
        ModelProto separate = OnnxModelFile.Load(onnx), fused = OnnxModelFile.Load(onnx);
        DecoderFusions.Apply(separate);
        int before = Count(fused, "MatMulNBits");

        DecoderFusions.Counts counts = DecoderFusions.Apply(fused, directory);

        Assert.Equal(2 * tiny.Config.NumHiddenLayers, counts.MatMulGroups);
        Assert.Equal(before - 3 * tiny.Config.NumHiddenLayers, Count(fused, "MatMulNBits"));
        float[] expected = Logits(separate, prompt, directory), actual = Logits(fused, prompt, directory);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(actual[i] - expected[i]) <= 1e-5 + 1e-5 * Math.Abs(expected[i]), $"logit {i}: {actual[i]} against {expected[i]}");
        }
    }

    /// <summary>The last position's logits of a prefill from an empty cache.</summary>
    private float[] Logits(ModelProto model, int[] prompt, string? directory = null)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 1 };
        options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", directory ?? Path.GetDirectoryName(tiny.Model.OnnxPath)!);
        using var session = new InferenceSession(model.ToByteArray(), options);
        var config = tiny.Config;
        var inputs = new List<NamedOnnxValue>();
        foreach (string name in session.InputMetadata.Keys)
        {
            inputs.Add(name switch
            {
                "input_ids" => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(prompt.Select(id => (long)id).ToArray(), [1, prompt.Length])),
                "attention_mask" => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(Enumerable.Repeat(1L, prompt.Length).ToArray(), [1, prompt.Length])),
                "position_ids" => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(Enumerable.Range(0, prompt.Length).Select(i => (long)i).ToArray(), [1, prompt.Length])),
                "num_logits_to_keep" => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<long>(new[] { 1L }, [])),
                _ => NamedOnnxValue.CreateFromTensor(name, new DenseTensor<float>([1, config.NumKeyValueHeads, 0, config.HeadDim])),
            });
        }

        using var results = session.Run(inputs);
        return [.. results.First(result => result.Name == "logits").AsEnumerable<float>()];
    }
}
