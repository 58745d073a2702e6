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
        foreach (string file in (string[])["config.json", "generation_config.json", "genai_config.json", "tokenizer.model", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "onnx/model.onnx", "onnx/model.onnx_data"])
        {
            Assert.True(File.Exists(Path.Combine(temp.Sub("tiny"), file)), $"{file} missing");
        }
    }

    [Fact]
    public void DtypesWritesTheVariantsBesideTheFp32ModelAndGenerateOpensEach()
    {
        using var temp = new TempFolder();
        string folder = temp.Sub("tiny");
        var result = ServingProcess.Run("models", "create", "--preset", "tiny", "--out", folder, "--dtypes", "fp32,q4,fp16");

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal("parameters: 214208\nvariant: onnx/model_q4.onnx\nvariant: onnx/model_fp16.onnx", result.Stdout.Trim());
        Assert.Equal(["model.onnx", "model.onnx_data", "model_fp16.onnx", "model_fp16.onnx_data", "model_q4.onnx", "model_q4.onnx_data"],
            Directory.EnumerateFiles(Path.Combine(folder, "onnx")).Select(Path.GetFileName).Order(StringComparer.Ordinal));
        Assert.DoesNotContain(Directory.EnumerateDirectories(folder), d => Path.GetFileName(d).StartsWith('.'));
        foreach (string dtype in (string[])["fp32", "q4", "fp16"])
        {
            var generated = ServingProcess.Run("generate", "--model", folder, "--dtype", dtype, "--prompt", "In the beginning", "--max-tokens", "3", "--json");
            Assert.True(generated.ExitCode == 0, $"{dtype}: {generated.Stderr}");
        }
    }

    [Theory]
    [InlineData("onnx-community")]
    [InlineData("genai")]
    public void EachStyleIsWrittenAndGeneratesWhatOurStyleGenerates(string style)
    {
        using var temp = new TempFolder();
        string ours = temp.Sub("ours"), styled = temp.Sub(style), exported = temp.Sub("exported");
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", ours, "--seed", "4").ExitCode);
        var created = ServingProcess.Run("models", "create", "--preset", "tiny", "--out", styled, "--seed", "4", "--style", style);
        Assert.True(created.ExitCode == 0, created.Stderr);
        var reexported = ServingProcess.Run("models", "export", "--model", ours, "--style", style, "--out", exported);
        Assert.True(reexported.ExitCode == 0, reexported.Stderr);
        Assert.Equal(File.ReadAllBytes(Path.Combine(styled, "onnx", "model.onnx_data")), File.ReadAllBytes(Path.Combine(exported, "onnx", "model.onnx_data")));

        string Tokens(string folder) => System.Text.Json.Nodes.JsonNode.Parse(
            ServingProcess.Run("generate", "--model", folder, "--prompt", "In the beginning", "--max-tokens", "8", "--json").Stdout)!["token_ids"]!.ToJsonString();
        Assert.Equal(Tokens(ours), Tokens(styled));
    }

    [Fact]
    public void ExportRefusesAFolderWithoutOurFp32Graph()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Sub("empty"));
        var result = ServingProcess.Run("models", "export", "--model", temp.Sub("empty"), "--style", "genai", "--out", temp.Sub("out"));
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("has no onnx/model.onnx", result.Stderr);
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
    [InlineData("--preset", "tiny", "--out", "x", "--dtypes", "fp32,q3")]
    [InlineData("--preset", "clip-tiny", "--out", "x", "--dtypes", "q4")]
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
