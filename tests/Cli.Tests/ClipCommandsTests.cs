using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

public class ClipCommandsTests
{
    [Fact]
    public void CreateClipTinyWritesTheTransformersJsSplitLayout()
    {
        using var temp = new TempFolder();
        var result = ServingProcess.Run("models", "create", "--preset", "clip-tiny", "--out", temp.Sub("clip"), "--seed", "1");

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("parameters: 170560", result.Stdout.Trim());
        foreach (string file in (string[])["config.json", "preprocessor_config.json", "vocab.json", "merges.txt", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "onnx/text_model.onnx", "onnx/vision_model.onnx"])
        {
            Assert.True(File.Exists(Path.Combine(temp.Sub("clip"), file)), $"{file} missing");
        }

        var config = JsonNode.Parse(File.ReadAllText(Path.Combine(temp.Sub("clip"), "config.json")))!;
        Assert.Equal("clip", config["model_type"]!.GetValue<string>());
    }

    [Fact]
    public void EvalDebiasPrintsOneRowPerMethod()
    {
        var result = ServingProcess.Run("eval-debias", "--json");
        Assert.Equal(0, result.ExitCode);
        JsonArray rows = JsonNode.Parse(result.Stdout)!.AsArray();
        Assert.Equal(["none", "projection", "WRING"], rows.Select(r => r!["method"]!.GetValue<string>()));
        Assert.True(rows[2]!["unconsidered_change_percent"]!.GetValue<double>() < rows[1]!["unconsidered_change_percent"]!.GetValue<double>());
    }
}
