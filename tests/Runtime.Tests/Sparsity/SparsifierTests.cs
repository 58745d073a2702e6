using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Sparsity;

/// <summary>A sparsified tiny Gemma 3 against the dense model carrying the same pruned weights.</summary>
public sealed class SparsifierTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _dense, _sparse;
    private readonly SparsifyReport _report;

    public SparsifierTests()
    {
        _dense = Path.Combine(_temp.Path, "dense");
        _sparse = Path.Combine(_temp.Path, "sparse");
        Gemma3ModelWriter.WriteRandom(_dense, Gemma3Presets.Tiny, seed: 3);
        _report = Sparsifier.Run(new SparsifyOptions(_dense, _sparse, PruningMethod.Magnitude));
    }

    [Fact]
    public void PrunesEveryProjectionAndNothingElse()
    {
        ModelProto model = OnnxModelFile.Load(Path.Combine(_sparse, Gemma3ModelWriter.OnnxFile));
        int layers = Gemma3Presets.Tiny.NumHiddenLayers;
        Assert.Equal(7 * layers, _report.Layers);
        Assert.Equal(7 * layers, model.Graph.Node.Count(node => node.OpType == SparseFormat.OpType));
        Assert.DoesNotContain(model.Graph.Initializer, t => t.Name.EndsWith("_proj.weight", StringComparison.Ordinal));
        Assert.Contains(model.Graph.Initializer, t => t.Name == Gemma3Weights.Embedding);
        Assert.Equal(0.53125, (double)_report.LayerBytesAfter / _report.LayerBytesBefore);
        Assert.True(File.Exists(Path.Combine(_sparse, "tokenizer.json")));
    }

    [Fact]
    public void LogitsEqualTheDenseModelWithThePrunedWeights()
    {
        string pruned = WritePrunedDense();
        // 20 prompt tokens take the GEMM path (M > 8); the decode step the GEMV path.
        int[] prompt = [.. Enumerable.Range(10, 20)];
        using DecoderModel sparse = DecoderModel.Load(_sparse), dense = DecoderModel.Load(pruned);
        using var sparseSession = new KvSession(sparse, 1);
        using var denseSession = new KvSession(dense, 1);
        foreach (int[] step in new[] { prompt, [42] })
        {
            var s = sparseSession.Step([step]);
            var d = denseSession.Step([step]);
            for (int position = 0; position < s.LogitPositions; position++)
            {
                double error = SparseMatMulOpTests.RelativeError(s.Logits(0, position), d.Logits(0, position));
                Assert.True(error <= 1e-4, $"position {position}: relative error {error}");
            }
        }
    }

    [Fact]
    public void DenseModelsDoNotNeedTheLibrary()
    {
        using var options = new SessionOptions();
        Assert.False(SparseKernels.RegisterIfUsed(options, Path.Combine(_dense, Gemma3ModelWriter.OnnxFile)));
        Assert.True(SparseKernels.UsesSparseOps(Path.Combine(_sparse, Gemma3ModelWriter.OnnxFile)));
    }

    [Fact]
    public void MalformedMasksFailAtLoadWithTheNodeAndRow()
    {
        string onnx = Path.Combine(_sparse, Gemma3ModelWriter.OnnxFile);
        ModelProto model = OnnxModelFile.Load(onnx);
        TensorProto masks = model.Graph.Initializer.First(t => t.Name.EndsWith(".sparse24_masks", StringComparison.Ordinal));
        var bytes = new byte[TensorData.ByteLength(masks)];
        TensorData.ReadBytes(masks, Path.GetDirectoryName(onnx)!, bytes);
        bytes[0] = 0xFF;
        masks.DataLocation = TensorProto.Types.DataLocation.Default;
        masks.ExternalData.Clear();
        masks.RawData = Google.Protobuf.ByteString.CopyFrom(bytes);
        OnnxModelFile.Save(model, onnx, externalThresholdBytes: long.MaxValue);

        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(_sparse));
        Assert.Contains("SparseMatMul24 node", error.Message);
        Assert.Contains("masks are not 2:4: row 0, group 0: keep-mask 0xf", error.Message);
    }

    [Fact]
    public void ExcludedLayersStayDense()
    {
        string output = Path.Combine(_temp.Path, "partial");
        var report = Sparsifier.Run(new SparsifyOptions(_dense, output, PruningMethod.Magnitude) { Exclude = new("mlp") });
        Assert.Equal(4 * Gemma3Presets.Tiny.NumHiddenLayers, report.Layers);
        using DecoderModel model = DecoderModel.Load(output);
    }

    [Fact]
    public void WandaWeighsByCalibrationActivationsAndLoads()
    {
        string text = Path.Combine(_temp.Path, "calibration.txt");
        File.WriteAllText(text, string.Concat(Enumerable.Repeat("In the beginning God created the heaven and the earth. ", 30)));
        string output = Path.Combine(_temp.Path, "wanda");
        Sparsifier.Run(new SparsifyOptions(_dense, output, PruningMethod.Wanda) { CalibrationText = text });

        ModelProto wanda = OnnxModelFile.Load(Path.Combine(output, Gemma3ModelWriter.OnnxFile));
        ModelProto magnitude = OnnxModelFile.Load(Path.Combine(_sparse, Gemma3ModelWriter.OnnxFile));
        Assert.NotEqual(MaskBytes(magnitude, _sparse), MaskBytes(wanda, output));
        using DecoderModel model = DecoderModel.Load(output);
    }

    [Fact]
    public void WandaWithoutCalibrationTextIsRefused()
    {
        var error = Assert.Throws<ArgumentException>(() =>
            Sparsifier.Run(new SparsifyOptions(_dense, Path.Combine(_temp.Path, "x"), PruningMethod.Wanda)));
        Assert.Contains("calibration", error.Message);
    }

    [Fact]
    public void Fp16WeightsStayFp16AndComputeTheSameProduct()
    {
        const int K = 24, N = 10;
        float[] weight = [.. SparseMatMulOpTests.Random(K * N, seed: 12).Select(x => (float)(Half)x)];
        var node = new NodeProto { Name = "/model/layers.0/mlp/up_proj/MatMul", OpType = "MatMul" };
        node.Input.AddRange(["A", "model.layers.0.mlp.up_proj.weight"]);
        node.Output.Add("Y");
        var tensor = new TensorProto { Name = "model.layers.0.mlp.up_proj.weight", DataType = (int)TensorProto.Types.DataType.Float16 };
        tensor.Dims.AddRange([K, N]);
        tensor.RawData = Google.Protobuf.ByteString.CopyFrom([.. weight.SelectMany(w => BitConverter.GetBytes((Half)w))]);
        string source = Path.Combine(_temp.Path, "fp16"), output = Path.Combine(_temp.Path, "fp16-sparse");
        OnnxModelFile.Save(SingleOpModel.Model(node, [tensor], sparse: false, TensorProto.Types.DataType.Float16), Path.Combine(source, "model.onnx"));

        SparsifyReport report = Sparsifier.Run(new SparsifyOptions(source, output, PruningMethod.Magnitude));

        Assert.Equal(K * N * 2, report.LayerBytesBefore);
        Assert.Equal(N * K / 2 * 2 + N * 3, report.LayerBytesAfter);
        float[] a = [.. SparseMatMulOpTests.Random(3 * K, seed: 13).Select(x => (float)(Half)x)];
        float[] sparse = SingleOpModel.Run(Path.Combine(output, "model.onnx"), a, [3, K]);
        float[] dense = SingleOpModel.Run(SingleOpModel.Dense(SparseFormat.Unpack(SparseFormat.Pack(weight, K, N)), K, N), a, [3, K]);
        Assert.True(SparseMatMulOpTests.RelativeError(sparse, dense) <= 5e-4);
    }

    private static byte[] MaskBytes(ModelProto model, string folder)
    {
        TensorProto masks = model.Graph.Initializer.First(t => t.Name.EndsWith("q_proj.weight.sparse24_masks", StringComparison.Ordinal));
        var bytes = new byte[TensorData.ByteLength(masks)];
        TensorData.ReadBytes(masks, Path.Combine(folder, "onnx"), bytes);
        return bytes;
    }

    /// <summary>The dense folder with every projection replaced by its pruned (unpacked) weight.</summary>
    private string WritePrunedDense()
    {
        string folder = Path.Combine(_temp.Path, "pruned-dense");
        string source = Path.Combine(_dense, "onnx");
        ModelProto model = OnnxModelFile.Load(Path.Combine(_dense, Gemma3ModelWriter.OnnxFile));
        foreach (SparseTarget target in SparseRewrite.FindTargets(model.Graph))
        {
            float[] pruned = SparseFormat.Unpack(SparseFormat.Pack(TensorData.ReadFloats(target.Weight, source), target.K, target.N));
            int index = model.Graph.Initializer.IndexOf(target.Weight);
            model.Graph.Initializer[index] = SingleOpModel.Floats(target.Weight.Name, pruned, target.K, target.N);
        }

        foreach (string file in Directory.EnumerateFiles(_dense))
        {
            Directory.CreateDirectory(folder);
            File.Copy(file, Path.Combine(folder, Path.GetFileName(file)));
        }

        OnnxModelFile.Save(model, Path.Combine(folder, Gemma3ModelWriter.OnnxFile), sourceDirectory: source);
        return folder;
    }

    public void Dispose() => _temp.Dispose();
}
