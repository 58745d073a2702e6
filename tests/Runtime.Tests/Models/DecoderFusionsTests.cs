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

    /// <summary>The paged graph of a q4 model runs each layer's q/k norm and rotary, and its gated GELU, as our fused ops.</summary>
    [Fact]
    public void ThePagedQuantizedGraphUsesOurFusedOpsInEveryLayer()
    {
        using var temp = new TempFolder();
        string folder = Path.Combine(temp.Path, "q4");
        Serving.Runtime.Quantization.Quantizer.Run(new Serving.Runtime.Quantization.QuantizeOptions(tiny.Folder, folder, "q4"));
        string onnx = Path.Combine(folder, "onnx", "model_q4.onnx");
        int layers = tiny.Config.NumHiddenLayers;

        ModelProto paged = PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(onnx), tiny.Config, modelDirectory: Path.GetDirectoryName(onnx));

        Assert.Equal(layers, Count(paged, DecoderFusions.QkNormRopeOp));
        Assert.Equal(layers, Count(paged, DecoderFusions.GeluGateOp));
        Assert.Equal(0, Count(paged, "RotaryEmbedding") + Count(paged, "FastGelu") + Count(paged, "Split"));
        // Left: each layer's post-attention and post-feedforward norms, the first layer's input norm (it reads the
        // embedding, not a sum) and the final one; the others are Skip norms or inside ours.
        Assert.Equal(2 * layers + 2, Count(paged, "SimplifiedLayerNormalization"));
    }

    /// <summary>
    /// Our fused ops against ONNX Runtime's own kernels on the chains they replace: the per-head q/k
    /// norm and rotary (4 query heads, 1 key/value head, positions out of order) and the gated GELU,
    /// over a prefill's rows and one decode row, with activations of a real model's range.
    /// </summary>
    [Theory]
    [InlineData(9)]
    [InlineData(1)]
    public void QkNormRopeAndGeluGateComputeTheChainsTheyReplace(int tokens)
    {
        const int Heads = 4, KvHeads = 1, D = 16, Positions = 40, Intermediate = 24;
        var random = new Random(tokens);
        float[] Values(int count, double scale) => [.. Enumerable.Range(0, count).Select(_ => (float)((random.NextDouble() * 2 - 1) * scale))];
        float[] qGamma = [.. Values(D, 1).Select(v => 1 + v)], kGamma = [.. Values(D, 1).Select(v => 1 + v)];
        ModelProto Chains()
        {
            var graph = new GraphProto { Name = "chains" };
            graph.Input.Add(GraphBuilder.ValueInfo("qkv", TensorProto.Types.DataType.Float, 1, "T", (Heads + 2 * KvHeads) * D));
            graph.Input.Add(GraphBuilder.ValueInfo("position_ids", TensorProto.Types.DataType.Int64, 1, "T"));
            graph.Input.Add(GraphBuilder.ValueInfo("cos", TensorProto.Types.DataType.Float, Positions, D / 2));
            graph.Input.Add(GraphBuilder.ValueInfo("sin", TensorProto.Types.DataType.Float, Positions, D / 2));
            graph.Input.Add(GraphBuilder.ValueInfo("x", TensorProto.Types.DataType.Float, 1, "T", 2 * Intermediate));
            void Init(string name, long[] dims, float[]? floats = null, long[]? longs = null)
            {
                var tensor = new TensorProto { Name = name, DataType = (int)(floats is null ? TensorProto.Types.DataType.Int64 : TensorProto.Types.DataType.Float) };
                tensor.Dims.AddRange(dims);
                if (floats is not null) tensor.FloatData.AddRange(floats); else tensor.Int64Data.AddRange(longs!);
                graph.Initializer.Add(tensor);
            }

            void Node(string op, string domain, string[] inputs, string[] outputs, params AttributeProto[] attributes)
            {
                var node = new NodeProto { Name = outputs[0] + "/" + op, OpType = op, Domain = domain };
                node.Input.AddRange(inputs);
                node.Output.AddRange(outputs);
                node.Attribute.AddRange(attributes);
                graph.Node.Add(node);
            }

            Init("widths", [3], longs: [Heads * D, KvHeads * D, KvHeads * D]);
            Init("q_heads", [4], longs: [0, 0, Heads, D]);
            Init("k_heads", [4], longs: [0, 0, KvHeads, D]);
            Init("rows", [3], longs: [0, 0, -1]);
            Init("q_gamma", [D], qGamma);
            Init("k_gamma", [D], kGamma);
            Init("halves", [2], longs: [Intermediate, Intermediate]);
            Node("Split", "", ["qkv", "widths"], ["q_raw", "k_raw", "v"], GraphBuilder.Attr("axis", -1L));
            foreach (string part in new[] { "q", "k" })
            {
                Node("Reshape", "", [part + "_raw", part + "_heads"], [part + "_4d"]);
                Node("SimplifiedLayerNormalization", "", [part + "_4d", part + "_gamma"], [part + "_normed"],
                    GraphBuilder.Attr("axis", -1L), GraphBuilder.Attr("epsilon", 1e-6f), GraphBuilder.Attr("stash_type", 1L));
                Node("Reshape", "", [part + "_normed", "rows"], [part + "_3d"]);
                Node("RotaryEmbedding", DecoderFusions.MicrosoftDomain, [part + "_3d", "position_ids", "cos", "sin"], [part], GraphBuilder.Attr("interleaved", 0L));
            }

            Node("Split", "", ["x", "halves"], ["gate", "up"], GraphBuilder.Attr("axis", -1L));
            Node("FastGelu", DecoderFusions.MicrosoftDomain, ["gate"], ["gelu"]);
            Node("Mul", "", ["gelu", "up"], ["y"]);
            foreach (string output in new[] { "q", "k", "v", "y" })
            {
                graph.Output.Add(GraphBuilder.ValueInfo(output, TensorProto.Types.DataType.Float));
            }

            var model = new ModelProto { IrVersion = 8, Graph = graph };
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 21 });
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = DecoderFusions.MicrosoftDomain, Version = 1 });
            return model;
        }

        float[] angles = [.. Enumerable.Range(0, Positions * D / 2).Select(i => (i / (D / 2)) * MathF.Pow(10000f, -2f * (i % (D / 2)) / D))];
        var inputs = new Dictionary<string, OrtValue>
        {
            ["qkv"] = OrtValue.CreateTensorValueFromMemory(Values(tokens * (Heads + 2 * KvHeads) * D, 4), [1, tokens, (Heads + 2 * KvHeads) * D]),
            ["position_ids"] = OrtValue.CreateTensorValueFromMemory(Enumerable.Range(0, tokens).Select(i => (long)((i * 7 + 3) % Positions)).ToArray(), [1, tokens]),
            ["cos"] = OrtValue.CreateTensorValueFromMemory(angles.Select(MathF.Cos).ToArray(), [Positions, D / 2]),
            ["sin"] = OrtValue.CreateTensorValueFromMemory(angles.Select(MathF.Sin).ToArray(), [Positions, D / 2]),
            ["x"] = OrtValue.CreateTensorValueFromMemory(Values(tokens * 2 * Intermediate, 6), [1, tokens, 2 * Intermediate]),
        };
        ModelProto fused = Chains();

        DecoderFusions.Counts counts = DecoderFusions.Apply(fused, ourOps: true);

        Assert.Equal((1, 1), (counts.QkNormRopes, counts.GeluGates));
        Assert.Equal([DecoderFusions.QkNormRopeOp, DecoderFusions.GeluGateOp], fused.Graph.Node.Select(node => node.OpType));
        float[][] expected = Run(Chains(), inputs), actual = Run(fused, inputs);
        for (int output = 0; output < expected.Length; output++)
        {
            Assert.Equal(expected[output].Length, actual[output].Length);
            for (int i = 0; i < expected[output].Length; i++)
            {
                Assert.True(Math.Abs(actual[output][i] - expected[output][i]) <= 2e-6 + 2e-6 * Math.Abs(expected[output][i]),
                    $"output {output}, value {i}: {actual[output][i]} against {expected[output][i]}");
            }
        }

        foreach (OrtValue value in inputs.Values)
        {
            value.Dispose();
        }
    }

    private static float[][] Run(ModelProto model, Dictionary<string, OrtValue> inputs)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        options.RegisterCustomOpLibrary(Serving.Runtime.Sparsity.SparseKernels.LibraryPath);
        using var session = new InferenceSession(model.ToByteArray(), options);
        string[] names = [.. inputs.Keys];
        using var results = session.Run(new RunOptions(), names, [.. names.Select(name => inputs[name])], ["q", "k", "v", "y"]);
        return [.. results.Select(result => result.GetTensorDataAsSpan<float>().ToArray())];
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
