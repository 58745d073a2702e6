using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

public sealed class QuantizeCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model;

    public QuantizeCommandTests()
    {
        _model = _temp.Sub("tiny");
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", _model, "--seed", "5").ExitCode);
    }

    private string[] Entries() => [.. Directory.EnumerateFileSystemEntries(_temp.Path).Select(Path.GetFileName).Order()!];

    [Fact]
    public void Q4WritesTheTransformersJsFileAndGenerateOpensItByDtype()
    {
        string output = _temp.Sub("q4");
        var result = ServingProcess.Run("quantize", "--model", _model, "--out", output, "--dtype", "q4");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.StartsWith("file: onnx/model_q4.onnx\nprojections: 28\nembedding: quantized, tied LM head reads the same tensor\n", result.Stdout);
        Assert.True(File.Exists(Path.Combine(output, "onnx", "model_q4.onnx_data")));
        Assert.True(File.Exists(Path.Combine(output, "onnx", "model.onnx")));

        var generated = ServingProcess.Run("generate", "--model", output, "--dtype", "q4", "--prompt", "In the beginning", "--max-tokens", "6", "--json");
        Assert.True(generated.ExitCode == 0, generated.Stderr);
        Assert.Equal(6, JsonNode.Parse(generated.Stdout)!["token_ids"]!.AsArray().Count);

        var missing = ServingProcess.Run("generate", "--model", output, "--dtype", "fp16", "--prompt", "x", "--max-tokens", "1");
        Assert.Equal(2, missing.ExitCode);
        Assert.Contains("onnx/model_fp16.onnx", missing.Stderr);
    }

    [Theory]
    [InlineData("--dtype", "q3")]
    [InlineData("--block-size", "24")]
    [InlineData("--block-size", "8")]
    [InlineData("--method", "awq")]
    [InlineData("--method", "gptq")]
    [InlineData("--embedding-bits", "6")]
    public void BadOptionsExit2AndWriteNothing(string option, string value)
    {
        string[] dtype = option == "--dtype" ? [] : ["--dtype", "q4"];
        var result = ServingProcess.Run(["quantize", "--model", _model, "--out", _temp.Sub("out"), option, value, .. dtype]);
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.Stderr);
        Assert.Equal(["tiny"], Entries());
    }

    [Fact]
    public void AwqSearchesOnTheCalibrationTextAndGenerateRunsTheResult()
    {
        string text = _temp.Sub("calibration.txt");
        File.WriteAllText(text, string.Join("\n", Enumerable.Repeat("And God said, Let there be light: and there was light.", 30)));
        string output = _temp.Sub("awq");
        var result = ServingProcess.Run("quantize", "--model", _model, "--out", output, "--dtype", "q4", "--method", "awq", "--calibration", text);

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("awq: /model/layers.0/input_layernorm/", result.Stdout);
        var generated = ServingProcess.Run("generate", "--model", output, "--dtype", "q4", "--prompt", "And God said", "--max-tokens", "4", "--json");
        Assert.True(generated.ExitCode == 0, generated.Stderr);
    }

    [Fact]
    public void ANonEmptyOutputFolderExits2AndIsKept()
    {
        string output = _temp.Sub("out");
        Directory.CreateDirectory(output);
        File.WriteAllText(Path.Combine(output, "keep.txt"), "x");
        var result = ServingProcess.Run("quantize", "--model", _model, "--out", output, "--dtype", "q8");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("not an empty folder", result.Stderr);
        Assert.Equal(["keep.txt"], Directory.EnumerateFileSystemEntries(output).Select(Path.GetFileName));
    }

    [Fact]
    public void AnAlreadyQuantizedModelExits2AndLeavesNoOutput()
    {
        string q8 = _temp.Sub("q8");
        Assert.Equal(0, ServingProcess.Run("quantize", "--model", _model, "--out", q8, "--dtype", "q8").ExitCode);
        // A downloaded folder whose model.onnx is itself quantized.
        File.Move(Path.Combine(q8, "onnx", "model_quantized.onnx"), Path.Combine(q8, "onnx", "model.onnx"), overwrite: true);

        var result = ServingProcess.Run("quantize", "--model", q8, "--out", _temp.Sub("again"), "--dtype", "q4");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("already quantized", result.Stderr);
        Assert.Equal(["q8", "tiny"], Entries());
    }

    [Fact]
    public void EvalPplTakesADtype()
    {
        string output = _temp.Sub("fp16");
        Assert.Equal(0, ServingProcess.Run("quantize", "--model", _model, "--out", output, "--dtype", "fp16").ExitCode);
        string text = _temp.Sub("text.txt");
        File.WriteAllText(text, string.Join('\n', Enumerable.Range(0, 40).Select(i => $"In the beginning {i} and the earth.")));
        var result = ServingProcess.Run("eval-ppl", "--model", output, "--dtype", "fp16", "--text", text, "--seq-len", "32", "--max-windows", "2");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Contains("perplexity", result.Stdout);
    }

    public void Dispose() => _temp.Dispose();
}
