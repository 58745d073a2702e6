using System.Text.Json.Nodes;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>Which .onnx file DecoderModel.Load opens: OnnxFile, then Dtype, then config.json's transformers.js dtype.</summary>
public sealed class OnnxFileChoiceTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public OnnxFileChoiceTests()
    {
        Gemma3ModelWriter.WriteRandom(_folder.Path, Gemma3Presets.Tiny, seed: 1);
        // Same graph under variant names: the choice of file is what is tested (their data is model.onnx_data).
        foreach (string file in new[] { "model_q4.onnx", "model_quantized.onnx" })
        {
            File.Copy(_folder.File("onnx/model.onnx"), _folder.File("onnx/" + file));
        }
    }

    private string Opened(DecoderLoadOptions? options = null)
    {
        using DecoderModel model = DecoderModel.Load(_folder.Path, options);
        return Path.GetRelativePath(_folder.Path, model.OnnxPath);
    }

    private void SetConfigDtype(JsonNode dtype)
    {
        string path = _folder.File("config.json");
        JsonObject config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["transformers.js_config"]!["dtype"] = dtype;
        File.WriteAllText(path, config.ToJsonString());
    }

    [Fact]
    public void WithoutADtypeTheFp32FileIsOpened() => Assert.Equal("onnx/model.onnx", Opened());

    [Theory]
    [InlineData("q4", "onnx/model_q4.onnx")]
    [InlineData("q8", "onnx/model_quantized.onnx")]
    [InlineData("fp32", "onnx/model.onnx")]
    public void ADtypeOpensItsTransformersJsFile(string dtype, string file) => Assert.Equal(file, Opened(new DecoderLoadOptions { Dtype = dtype }));

    [Fact]
    public void ConfigJsonsDtypeIsTheDefaultAndAnExplicitDtypeWins()
    {
        SetConfigDtype("q4");
        Assert.Equal("onnx/model_q4.onnx", Opened());
        Assert.Equal("onnx/model.onnx", Opened(new DecoderLoadOptions { Dtype = "fp32" }));
    }

    [Fact]
    public void APerFileConfigDtypeIsReadForTheModelFile()
    {
        SetConfigDtype(new JsonObject { ["model"] = "q8", ["embed_tokens"] = "fp16" });
        Assert.Equal("onnx/model_quantized.onnx", Opened());
    }

    [Fact]
    public void OnnxFileWinsOverEveryDtype()
    {
        SetConfigDtype("q4");
        Assert.Equal("onnx/model_quantized.onnx", Opened(new DecoderLoadOptions { OnnxFile = "onnx/model_quantized.onnx", Dtype = "q4" }));
    }

    [Fact]
    public void AMissingVariantIsNamedWithTheFilesThereAre()
    {
        var error = Assert.Throws<ModelLoadException>(() => Opened(new DecoderLoadOptions { Dtype = "fp16" }));
        Assert.Contains(_folder.File("onnx/model_fp16.onnx"), error.Message);
        Assert.Contains("onnx/model.onnx, onnx/model_q4.onnx, onnx/model_quantized.onnx", error.Message);
    }

    [Fact]
    public void AMissingVariantNamedByConfigJsonIsNamedToo()
    {
        SetConfigDtype("q4f16");
        var error = Assert.Throws<ModelLoadException>(() => Opened());
        Assert.Contains("onnx/model_q4f16.onnx", error.Message);
        Assert.Contains("transformers.js_config.dtype", error.Message);
    }

    [Fact]
    public void AnUnknownDtypeInConfigJsonNamesTheFile()
    {
        SetConfigDtype("q3");
        var error = Assert.Throws<ModelLoadException>(() => Opened());
        Assert.Contains(_folder.File("config.json"), error.Message);
        Assert.Contains("'q3'", error.Message);
    }

    [Fact]
    public void AnUnknownDtypeOptionIsAnArgumentError() =>
        Assert.Throws<ArgumentException>(() => Opened(new DecoderLoadOptions { Dtype = "q3" }));

    public void Dispose() => _folder.Dispose();
}
