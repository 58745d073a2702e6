using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Quantization;
using Serving.Runtime.Tests.Models.Gemma3;
using Serving.Runtime.Tests.Sparsity;

namespace Serving.Runtime.Tests.Quantization;

public sealed class QuantizerTests(QuantizedModelFixture fixture) : IClassFixture<QuantizedModelFixture>
{
    private static readonly int[] Prompt = [2, .. Enumerable.Range(0, 24).Select(i => 10 + (i * 37) % 700)];

    /// <summary>The largest relative L2 error of the logits over a 25-token prefill and 3 decode steps.</summary>
    private double LogitError(string folder, string? dtype, string? referenceFolder = null)
    {
        using DecoderModel reference = DecoderModel.Load(referenceFolder ?? fixture.Fp32);
        using DecoderModel variant = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype });
        using var expected = new KvSession(reference, 1);
        using var actual = new KvSession(variant, 1);
        double worst = 0;
        foreach (int[] step in new[] { Prompt, [42], [7], [300] })
        {
            var e = expected.Step([step]);
            var a = actual.Step([step]);
            for (int position = 0; position < e.LogitPositions; position++)
            {
                worst = Math.Max(worst, SparseMatMulOpTests.RelativeError(a.Logits(0, position), e.Logits(0, position)));
            }
        }

        return worst;
    }

    /// <summary>
    /// Measured on the tiny preset (seed 7), default options: fp16 0.0018, q8 0.052, q4 0.74. The
    /// random tiny model amplifies weight error about 6x (fp16's ~0.03% per weight gives 0.18%), its
    /// 64-wide rows are two blocks of 32, and accuracy_level 4 adds ~4% by itself (int8 activations,
    /// see the test below), so q4 here is loose: RTN q4 of a trained model is far closer.
    /// </summary>
    [Theory]
    [InlineData("fp16", 0.005)]
    [InlineData("q8", 0.08)]
    [InlineData("q4", 0.9)]
    public void LogitsAreCloseToFp32(string dtype, double bound)
    {
        double error = LogitError(fixture.Folders[dtype], dtype);
        Assert.True(error <= bound, $"{dtype}: relative logit error {error:G3} > {bound}");
    }

    /// <summary>
    /// With fp32 activations (accuracy_level 1) the variant computes exactly the fp32 graph over
    /// dequantize(quantize(W)): the packing, the shared embedding and the head agree with
    /// <see cref="BlockQuantizer.Dequantize"/>. Level 4 adds MLAS' int8 quantization of the activations.
    /// </summary>
    [Theory]
    [InlineData("q4", 1, 1e-5)]
    [InlineData("q8", 1, 1e-5)]
    [InlineData("q8", 4, 0.06)]
    [InlineData("q4", 4, 0.06)]
    public void TheVariantEqualsTheFp32GraphOverItsDequantizedWeights(string dtype, int accuracyLevel, double bound)
    {
        using var temp = new TempFolder();
        string folder = Path.Combine(temp.Path, dtype);
        Quantizer.Run(new QuantizeOptions(fixture.Fp32, folder, dtype) { AccuracyLevel = accuracyLevel });
        string dequantized = WriteDequantized(temp.Path, new BlockSpec(dtype == "q8" ? 8 : 4, QuantizeOptions.DefaultBlockSize, Symmetric: true));

        double error = LogitError(folder, dtype, dequantized);
        Assert.True(error <= bound, $"{dtype} at accuracy_level {accuracyLevel}: relative logit error {error:G3} > {bound}");
    }

    /// <summary>The fp32 folder with every projection and the embedding replaced by dequantize(quantize(W)).</summary>
    private string WriteDequantized(string root, BlockSpec spec)
    {
        string folder = Path.Combine(root, "dequantized"), source = Path.Combine(fixture.Fp32, "onnx");
        ModelProto model = OnnxModelFile.Load(Path.Combine(fixture.Fp32, Gemma3ModelWriter.OnnxFile));
        foreach (var target in Serving.Runtime.Sparsity.SparseRewrite.FindTargets(model.Graph))
        {
            float[] columns = BlockQuantizer.Dequantize(BlockQuantizer.QuantizeTransposed(TensorData.ReadFloats(target.Weight, source), target.K, target.N, spec));
            float[] weight = [.. Enumerable.Range(0, target.K * target.N).Select(i => columns[(i % target.N) * target.K + i / target.N])];
            Replace(model, target.Weight, weight);
        }

        TensorProto embedding = model.Graph.Initializer.Single(t => t.Name == Gemma3Weights.Embedding);
        var (vocab, hidden) = ((int)embedding.Dims[0], (int)embedding.Dims[1]);
        Replace(model, embedding, BlockQuantizer.Dequantize(BlockQuantizer.Quantize(TensorData.ReadFloats(embedding, source), vocab, hidden, spec)));
        CopyFolder(fixture.Fp32, folder, skip: "onnx");
        OnnxModelFile.Save(model, Path.Combine(folder, Gemma3ModelWriter.OnnxFile), sourceDirectory: source);
        return folder;
    }

    private static void Replace(ModelProto model, TensorProto tensor, float[] values)
    {
        int index = model.Graph.Initializer.IndexOf(tensor);
        model.Graph.Initializer[index] = SingleOpModel.Floats(tensor.Name, values, [.. tensor.Dims]);
    }

    /// <summary>Calibration tokens for awq: a varied stretch of the tiny vocabulary.</summary>
    private static readonly int[] CalibrationTokens = [2, .. Enumerable.Range(0, 300).Select(i => 5 + (i * 53 + i * i) % 900)];

    /// <summary>
    /// awq's rescaling is exact before rounding: every searched weight row times sₖ, the norm in front
    /// divided by sₖ (Gemma's 1 + w), up_proj's columns divided by down_proj's sₖ: the fp32 model computes
    /// what it computed.
    /// </summary>
    [Fact]
    public void FoldingTheAwqScalesLeavesTheFp32ModelsFunction()
    {
        using var temp = new TempFolder();
        string source = Path.Combine(fixture.Fp32, "onnx");
        ModelProto model = OnnxModelFile.Load(Path.Combine(fixture.Fp32, Gemma3ModelWriter.OnnxFile));
        var targets = Serving.Runtime.Sparsity.SparseRewrite.FindTargets(model.Graph);
        var scales = ActivationAwareScaling.Search(Path.Combine(fixture.Fp32, Gemma3ModelWriter.OnnxFile), model, targets, CalibrationTokens, new BlockSpec(4, 32, true));
        Assert.Contains(scales.RowMultipliers.Values, s => s.Any(v => MathF.Abs(v - 1) > 0.05f));
        foreach (var target in targets)
        {
            float[] weight = TensorData.ReadFloats(target.Weight, source);
            scales.Apply(target.Weight.Name, weight, target.K, target.N);
            Replace(model, target.Weight, weight);
        }

        foreach (var (name, values) in scales.NormWeights)
        {
            Replace(model, model.Graph.Initializer.Single(t => t.Name == name), values);
        }

        string folder = Path.Combine(temp.Path, "rescaled");
        CopyFolder(fixture.Fp32, folder, skip: "onnx");
        OnnxModelFile.Save(model, Path.Combine(folder, Gemma3ModelWriter.OnnxFile), sourceDirectory: source);

        double error = LogitError(folder, null);
        Assert.True(error <= 1e-4, $"relative logit error {error:G3} after folding the scales");
    }

    /// <summary>
    /// Three groups per layer (q/k/v behind input_layernorm, gate/up behind pre_feedforward_layernorm,
    /// down behind up's columns); o_proj stays RTN; α = 0 is RTN, so the chosen error is never above it.
    /// </summary>
    [Fact]
    public void AwqSearchesEveryFoldableGroupAndNeverLosesToRtn()
    {
        using var temp = new TempFolder();
        string text = temp.File("calibration.txt");
        File.WriteAllText(text, string.Join("\n", Enumerable.Range(0, 40).Select(i => $"In the beginning {i} the earth was without form, and void.")));
        QuantizeReport report = Quantizer.Run(new QuantizeOptions(fixture.Fp32, Path.Combine(temp.Path, "awq"), "q4") { Method = "awq", CalibrationText = text });

        var groups = report.Awq!;
        Assert.Equal(3 * Gemma3Presets.Tiny.NumHiddenLayers, groups.Count);
        Assert.DoesNotContain(groups, g => g.Weights.Any(w => w.Contains("o_proj", StringComparison.Ordinal)));
        Assert.All(groups, g => Assert.True(g.AwqError <= g.RtnError, $"{g.Input}: {g.AwqError} > {g.RtnError}"));
        Assert.Contains(groups, g => g.Alpha > 0 && g.AwqError < g.RtnError);
        Assert.Contains(groups, g => g.FoldedInto.EndsWith("up_proj.weight (columns)", StringComparison.Ordinal));

        double error = LogitError(Path.Combine(temp.Path, "awq"), "q4");
        Assert.True(error <= 0.9, $"awq q4: relative logit error {error:G3}");
    }

    [Theory]
    [InlineData("q4", null, "needs --calibration")]
    [InlineData("fp16", "calibration.txt", "plain conversion")]
    [InlineData("q4", "missing.txt", "calibration file not found")]
    public void AwqWithoutUsableCalibrationIsRefusedBeforeAnythingIsWritten(string dtype, string? calibration, string reason)
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("calibration.txt"), "In the beginning");
        string output = Path.Combine(temp.Path, "out");
        var options = new QuantizeOptions(fixture.Fp32, output, dtype) { Method = "awq", CalibrationText = calibration is null ? null : temp.File(calibration) };
        var error = Assert.Throws<ArgumentException>(() => Quantizer.Run(options));
        Assert.Contains(reason, error.Message);
        Assert.False(Directory.Exists(output));
    }

    /// <summary>q4 with an 8-bit embedding and head (llama.cpp's q4_0 choice): the lookup and the head read 8-bit blocks, the projections 4-bit.</summary>
    [Fact]
    public void Q4WithAnEightBitEmbeddingQuantizesTheHeadAtEightBits()
    {
        using var temp = new TempFolder();
        string folder = Path.Combine(temp.Path, "q4e8");
        Quantizer.Run(new QuantizeOptions(fixture.Fp32, folder, "q4") { EmbeddingBits = 8 });
        ModelProto model = OnnxModelFile.Load(Path.Combine(folder, "onnx", "model_q4.onnx"));
        long Bits(NodeProto node) => node.Attribute.Single(a => a.Name == "bits").I;

        NodeProto gather = model.Graph.Node.Single(node => node.OpType == "GatherBlockQuantized");
        NodeProto head = model.Graph.Node.Single(node => node.OpType == "MatMulNBits" && node.Input[1] == gather.Input[0]);
        Assert.Equal(8, Bits(gather));
        Assert.Equal(8, Bits(head));
        Assert.All(model.Graph.Node.Where(node => node.OpType == "MatMulNBits" && node != head), node => Assert.Equal(4, Bits(node)));
        double error = LogitError(folder, "q4");
        Assert.True(error <= 0.9, $"q4 with an 8-bit embedding: relative logit error {error:G3}");
    }

    [Theory]
    [InlineData("q4", 6)]
    [InlineData("fp16", 8)]
    public void EmbeddingBitsOtherThanFourOrEightOrOnFp16AreRefused(string dtype, int bits)
    {
        using var temp = new TempFolder();
        string output = Path.Combine(temp.Path, "out");
        Assert.Throws<ArgumentException>(() => Quantizer.Run(new QuantizeOptions(fixture.Fp32, output, dtype) { EmbeddingBits = bits }));
        Assert.False(Directory.Exists(output));
    }

    [Fact]
    public void Q8GreedyTokensMatchFp32()
    {
        using DecoderModel reference = DecoderModel.Load(fixture.Fp32);
        using DecoderModel q8 = DecoderModel.Load(fixture.Folders["q8"], new DecoderLoadOptions { Dtype = "q8" });
        var options = new GenerateOptions(8, StopAtEos: false);
        Assert.Equal(new Generator(reference).Generate(Prompt, options).TokenIds, new Generator(q8).Generate(Prompt, options).TokenIds);
    }

    [Theory]
    [InlineData("q4", 4)]
    [InlineData("q8", 8)]
    public void EveryProjectionRunsMatMulNBitsAndTheEmbeddingIsStoredOnce(string dtype, int bits)
    {
        string folder = fixture.Folders[dtype];
        ModelProto model = OnnxModelFile.Load(Path.Combine(folder, OnnxVariant.FileName(dtype)));
        GraphProto graph = model.Graph;
        var config = Gemma3Presets.Tiny;
        const int Block = QuantizeOptions.DefaultBlockSize;
        int blocks = config.HiddenSize / Block;

        var matMuls = graph.Node.Where(n => n.OpType == "MatMulNBits").ToList();
        Assert.Equal(7 * config.NumHiddenLayers + 1, matMuls.Count);
        Assert.DoesNotContain(graph.Node, n => n.OpType is "MatMul" or "Gemm" or "Gather" && graph.Initializer.Any(t => n.Input.Contains(t.Name)));
        Assert.All(matMuls, n =>
        {
            Assert.Equal(QuantizeRewrite.Domain, n.Domain);
            Assert.Equal(3, n.Input.Count); // symmetric: no zero points
            Assert.Equal([4L, bits, Block], n.Attribute.Where(a => a.Name is "accuracy_level" or "block_size" or "bits").OrderBy(a => a.Name).Select(a => a.I));
        });

        // One [V, k_blocks, blob] tensor, read by the gather and by the LM head.
        var embedding = Assert.Single(graph.Initializer, t => t.Dims.Count > 0 && t.Dims[0] == config.VocabSize && t.DataType == (int)TensorProto.Types.DataType.Uint8);
        Assert.Equal([config.VocabSize, blocks, Block * bits / 8], embedding.Dims);
        Assert.DoesNotContain(graph.Initializer, t => t.Name == Gemma3Weights.Embedding);
        NodeProto gather = Assert.Single(graph.Node, n => n.OpType == "GatherBlockQuantized");
        Assert.Equal(embedding.Name, gather.Input[0]);
        Assert.Single(matMuls, n => n.Input[1] == embedding.Name && n.Attribute.Single(a => a.Name == "N").I == config.VocabSize);
        Assert.Contains(model.OpsetImport, o => o.Domain == QuantizeRewrite.Domain);
    }

    [Theory]
    [InlineData("q4", "onnx/model_q4.onnx")]
    [InlineData("q8", "onnx/model_quantized.onnx")]
    [InlineData("fp16", "onnx/model_fp16.onnx")]
    public void TheVariantSitsBesideTheOriginalInACopyOfTheFolder(string dtype, string file)
    {
        string folder = fixture.Folders[dtype];
        Assert.Equal(file, fixture.Reports[dtype].OnnxFile);
        Assert.True(File.Exists(Path.Combine(folder, file + "_data")));
        foreach (string original in Directory.EnumerateFiles(fixture.Fp32, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(fixture.Fp32, original);
            Assert.Equal(File.ReadAllBytes(original), File.ReadAllBytes(Path.Combine(folder, relative)));
        }

        Assert.DoesNotContain(Directory.EnumerateFileSystemEntries(fixture.Root), entry => Path.GetFileName(entry).StartsWith('.'));
    }

    [Fact]
    public void Fp16StoresHalfTheWeightBytes()
    {
        QuantizeReport report = fixture.Reports["fp16"];
        Assert.Equal(0.5, (double)report.WeightBytesAfter / report.WeightBytesBefore);
        ModelProto model = OnnxModelFile.Load(Path.Combine(fixture.Folders["fp16"], "onnx/model_fp16.onnx"));
        Assert.DoesNotContain(model.Graph.Initializer, t => t.Name.EndsWith(".weight", StringComparison.Ordinal));
    }

    [Fact]
    public void AsymmetricQ4StoresZeroPointsAndStaysClose()
    {
        string folder = Path.Combine(fixture.Root, "q4-asymmetric-" + Guid.NewGuid().ToString("N"));
        try
        {
            Quantizer.Run(new QuantizeOptions(fixture.Fp32, folder, "q4") { Symmetric = false, BlockSize = 16 });
            ModelProto model = OnnxModelFile.Load(Path.Combine(folder, "onnx/model_q4.onnx"));
            Assert.All(model.Graph.Node.Where(n => n.OpType == "MatMulNBits"), n => Assert.Equal(4, n.Input.Count));
            Assert.Equal(4, model.Graph.Node.Single(n => n.OpType == "GatherBlockQuantized").Input.Count);
            double error = LogitError(folder, "q4");
            Assert.True(error <= 0.6, $"relative logit error {error:G3}"); // measured 0.44 (block 16)
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    [Fact]
    public void AnAlreadyQuantizedModelIsRefusedAndNothingIsWritten()
    {
        using var temp = new TempFolder();
        string quantized = Path.Combine(temp.Path, "quantized"), output = Path.Combine(temp.Path, "out");
        CopyFolder(fixture.Folders["q4"], quantized);
        File.Move(Path.Combine(quantized, "onnx/model_q4.onnx"), Path.Combine(quantized, "onnx/model.onnx"), overwrite: true);

        var error = Assert.Throws<InvalidDataException>(() => Quantizer.Run(new QuantizeOptions(quantized, output, "q8")));
        Assert.Contains("already quantized", error.Message);
        Assert.Equal(["quantized"], Directory.EnumerateFileSystemEntries(temp.Path).Select(Path.GetFileName));
    }

    [Theory]
    [InlineData("int3", 32)]
    [InlineData("q4", 24)]
    [InlineData("q4", 8)]
    public void BadOptionsAreRefusedBeforeAnythingIsWritten(string dtype, int blockSize)
    {
        using var temp = new TempFolder();
        string output = Path.Combine(temp.Path, "out");
        Assert.Throws<ArgumentException>(() => Quantizer.Run(new QuantizeOptions(fixture.Fp32, output, dtype) { BlockSize = blockSize }));
        Assert.Empty(Directory.EnumerateFileSystemEntries(temp.Path));
    }

    [Fact]
    public void ANonEmptyOutputFolderIsRefusedAndKept()
    {
        using var temp = new TempFolder();
        File.WriteAllText(temp.File("keep.txt"), "x");
        Assert.Throws<IOException>(() => Quantizer.Run(new QuantizeOptions(fixture.Fp32, temp.Path, "q4")));
        Assert.Equal(["keep.txt"], Directory.EnumerateFileSystemEntries(temp.Path).Select(Path.GetFileName));
    }

    [Fact]
    public void AnOutputFolderInsideTheModelFolderIsNotCopiedIntoItself()
    {
        using var temp = new TempFolder();
        string model = Path.Combine(temp.Path, "model"), output = Path.Combine(model, "variants", "q8");
        CopyFolder(fixture.Fp32, model);
        Quantizer.Run(new QuantizeOptions(model, output, "q8"));

        Assert.True(File.Exists(Path.Combine(output, "onnx/model_quantized.onnx")));
        Assert.False(Directory.Exists(Path.Combine(output, "variants")));
    }

    private static void CopyFolder(string source, string target, string? skip = null)
    {
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            if (skip is not null && Path.GetRelativePath(source, file).StartsWith(skip, StringComparison.Ordinal))
            {
                continue;
            }

            string destination = Path.Combine(target, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(destination)!);
            File.Copy(file, destination);
        }
    }
}
