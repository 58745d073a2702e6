using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Tests.KvCompression;

public sealed class KvCalibrationTests(CalibratedModelFixture fixture) : IClassFixture<CalibratedModelFixture>
{
    [Fact]
    public void TheFileRoundTripsAndTheModelLoadsIt()
    {
        KvCalibration loaded = fixture.Model.KvCalibration!;
        Assert.Equal(fixture.Calibration.Tokens, loaded.Tokens);
        Assert.Equal(600, loaded.Tokens);
        for (int layer = 0; layer < loaded.Layers; layer++)
        {
            for (int head = 0; head < loaded.QueryHeads; head++)
            {
                Assert.Equal(fixture.Calibration.MeanRe(layer, head).ToArray(), loaded.MeanRe(layer, head).ToArray());
                Assert.Equal(fixture.Calibration.MeanModulus(layer, head).ToArray(), loaded.MeanModulus(layer, head).ToArray());
            }
        }
    }

    [Fact]
    public void TheMeanModulusIsAtLeastTheModulusOfTheMean()
    {
        KvCalibration calibration = fixture.Calibration;
        for (int layer = 0; layer < calibration.Layers; layer++)
        {
            for (int head = 0; head < calibration.QueryHeads; head++)
            {
                for (int f = 0; f < calibration.Bands; f++)
                {
                    float re = calibration.MeanRe(layer, head)[f], im = calibration.MeanIm(layer, head)[f];
                    Assert.True(float.IsFinite(re) && float.IsFinite(im));
                    Assert.True(calibration.MeanModulus(layer, head)[f] >= MathF.Sqrt(re * re + im * im) - 1e-5f);
                }
            }
        }
    }

    [Fact]
    public void OneTokenGivesThatTokensQueryAsTheMean()
    {
        // One query: its mean is itself, so E|q_f| = |E[q_f]| in every band, and the spread term vanishes.
        string onnx = Path.Combine(fixture.Folder, Gemma3ModelWriter.OnnxFile);
        KvCalibration single = KvCalibrator.Calibrate(onnx, fixture.Config, [2]);
        for (int f = 0; f < single.Bands; f++)
        {
            float re = single.MeanRe(2, 1)[f], im = single.MeanIm(2, 1)[f];
            Assert.Equal(MathF.Sqrt(re * re + im * im), single.MeanModulus(2, 1)[f], 1e-5f);
        }

        Assert.NotEqual(single.MeanRe(2, 1).ToArray(), fixture.Calibration.MeanRe(2, 1).ToArray());
    }

    [Fact]
    public void AGraphWithoutQueryNormsIsRefusedWithTheNamesLookedFor()
    {
        var graph = new GraphProto();
        graph.Node.Add(new NodeProto { Name = "/model/layers.0/self_attn/q_proj/MatMul", OpType = "MatMul", Input = { "x", "w" }, Output = { "q" } });
        var error = Assert.Throws<InvalidDataException>(() => KvCalibrator.FindQueryTaps(graph, 1));
        Assert.Contains("/model/layers.0/self_attn/q_norm/", error.Message);
    }

    [Fact]
    public void HuggingFaceNodeNamesAreFoundByTheirScope()
    {
        // q_norm as Optimum exports it: several nodes in the scope, one value read by RoPE outside it.
        var graph = new GraphProto();
        graph.Node.Add(new NodeProto { Name = "/model/layers.0/self_attn/q_norm/Pow", OpType = "Pow", Input = { "q" }, Output = { "p" } });
        graph.Node.Add(new NodeProto { Name = "/model/layers.0/self_attn/q_norm/Mul_1", OpType = "Mul", Input = { "p", "w" }, Output = { "/model/layers.0/self_attn/q_norm/Mul_1_output_0" } });
        graph.Node.Add(new NodeProto { Name = "/model/layers.0/self_attn/Mul", OpType = "Mul", Input = { "/model/layers.0/self_attn/q_norm/Mul_1_output_0", "cos" }, Output = { "r" } });
        Assert.Equal(["/model/layers.0/self_attn/q_norm/Mul_1_output_0"], KvCalibrator.FindQueryTaps(graph, 1));
    }

    [Fact]
    public void AMalformedCalibrationFileFailsTheModelLoadNamingIt()
    {
        using var folder = new TempFolder();
        Gemma3ModelWriter.WriteRandom(folder.Path, Gemma3Presets.Tiny, seed: 3);
        File.WriteAllText(Path.Combine(folder.Path, KvCalibration.FileName), """{"format":"serving-kv-calibration/1","num_layers":4,"num_query_heads":4,"head_dim":16,"tokens":1,"mean_re":[1],"mean_im":[1],"mean_modulus":[1]}""");
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains(KvCalibration.FileName, error.Message);
    }
}
