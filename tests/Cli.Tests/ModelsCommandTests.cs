namespace Serving.Cli.Tests;

public class ModelsCommandTests
{
    [Fact]
    public void CreateWritesAHuggingFaceFolderAndPrintsTheParameterCount()
    {
        using var temp = new TempFolder();
        var result = ServingProcess.Run("models", "create", "--preset", "tiny", "--out", temp.Sub("tiny"), "--seed", "3");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("parameters: 214208", result.Stdout.Trim());
        foreach (string file in (string[])["config.json", "generation_config.json", "tokenizer.model", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "onnx/model.onnx", "onnx/model.onnx_data"])
        {
            Assert.True(File.Exists(Path.Combine(temp.Sub("tiny"), file)), $"{file} missing");
        }
    }

    [Fact]
    public void SameSeedSameBytesOtherSeedOtherWeights()
    {
        using var temp = new TempFolder();
        foreach (var (name, seed) in new[] { ("a", "9"), ("b", "9"), ("c", "10") })
        {
            Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", temp.Sub(name), "--seed", seed).ExitCode);
        }

        byte[] Data(string name) => File.ReadAllBytes(Path.Combine(temp.Sub(name), "onnx", "model.onnx_data"));
        byte[] Graph(string name) => File.ReadAllBytes(Path.Combine(temp.Sub(name), "onnx", "model.onnx"));
        Assert.Equal(Data("a"), Data("b"));
        Assert.Equal(Graph("a"), Graph("b"));
        Assert.NotEqual(Data("a"), Data("c"));
    }

    [Theory]
    [InlineData("--preset", "huge", "--out", "x")]
    [InlineData("--out", "x")]
    [InlineData("--preset", "tiny")]
    [InlineData("--preset", "tiny", "--out", "x", "--seed", "minus-one")]
    public void BadArgumentsExitWithTwoAndAMessage(params string[] args)
    {
        var result = ServingProcess.Run(["models", "create", .. args]);
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error:", result.Stderr);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public void RefusesToOverwriteAFolderWithFiles()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Sub("full"));
        File.WriteAllText(Path.Combine(temp.Sub("full"), "keep.txt"), "mine");
        var result = ServingProcess.Run("models", "create", "--preset", "tiny", "--out", temp.Sub("full"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("not empty", result.Stderr);
        Assert.Equal("mine", File.ReadAllText(Path.Combine(temp.Sub("full"), "keep.txt")));
    }

    [Fact]
    public void RefusesAnOutputPathThatIsAFile()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);
        string file = temp.Sub("file.txt");
        File.WriteAllText(file, "mine");
        var result = ServingProcess.Run("models", "create", "--preset", "tiny", "--out", file);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is a file", result.Stderr);
    }
}
