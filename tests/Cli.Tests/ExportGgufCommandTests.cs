using System.Text;

namespace Serving.Cli.Tests;

public sealed class ExportGgufCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model;

    public ExportGgufCommandTests()
    {
        _model = _temp.Sub("tiny");
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", _model, "--seed", "5").ExitCode);
    }

    [Fact]
    public void TinyAsIsWarnsThatLlamaCppsLayoutDiffersAndPaddedDoesNot()
    {
        string asIs = Path.Combine(_temp.Path, "as-is.gguf"), padded = Path.Combine(_temp.Path, "padded.gguf");
        var plain = ServingProcess.Run("export-gguf", "--model", _model, "--out", asIs);
        var pad = ServingProcess.Run("export-gguf", "--model", _model, "--out", padded, "--layout", "padded");

        Assert.True(plain.ExitCode == 0, plain.Stderr);
        Assert.Contains("warning: llama.cpp's gemma3 layout differs", plain.Stderr);
        Assert.True(pad.ExitCode == 0, pad.Stderr);
        Assert.DoesNotContain("warning", pad.Stderr);
        Assert.Equal("GGUF", Encoding.ASCII.GetString(File.ReadAllBytes(asIs), 0, 4));
        Assert.True(new FileInfo(padded).Length > new FileInfo(asIs).Length); // 12 layers for 4
    }

    [Theory]
    [InlineData("--layout", "sideways")]
    [InlineData("--model", "/nonexistent/folder")]
    public void BadInputExits2(string option, string value)
    {
        string[] model = option == "--model" ? [] : ["--model", _model];
        var result = ServingProcess.Run(["export-gguf", "--out", Path.Combine(_temp.Path, "x.gguf"), option, value, .. model]);
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error: ", result.Stderr);
        Assert.False(File.Exists(Path.Combine(_temp.Path, "x.gguf")));
    }

    public void Dispose() => _temp.Dispose();
}
