using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

public class TrainClipCommandTests
{
    [Fact]
    public void TrainsAClipThatEvalDebiasMeasures()
    {
        using var temp = new TempFolder();
        var trained = ServingProcess.Run("train-clip", "--config", "tiny", "--out", temp.Sub("clip"), "--steps", "3", "--batch", "8", "--checkpoint-every", "2");

        Assert.True(trained.ExitCode == 0, trained.Stderr);
        Assert.StartsWith("zero-shot accuracy on 512 balanced scenes: shape ", trained.Stdout);
        Assert.Equal(4, File.ReadAllLines(temp.Sub("clip/training_log.csv")).Length); // header and 3 steps
        Assert.True(File.Exists(temp.Sub("clip/onnx/vision_model.onnx")));

        var evaluated = ServingProcess.Run("eval-debias", "--model", temp.Sub("clip"), "--repeats", "1", "--json");
        Assert.True(evaluated.ExitCode == 0, evaluated.Stderr);
        JsonArray rows = JsonNode.Parse(evaluated.Stdout)!.AsArray();
        Assert.Equal(["none", "projection", "WRING", "projection", "WRING"], rows.Select(r => r!["method"]!.GetValue<string>()));
        Assert.Equal(["-", "prompts", "prompts", "images", "images"], rows.Select(r => r!["concept_from"]!.GetValue<string>()));
        Assert.All(rows, r => Assert.InRange(r!["shape_accuracy"]!.GetValue<double>(), 0, 1));
    }

    [Fact]
    public void ResumeWithStepsExtendsTheRun()
    {
        using var temp = new TempFolder();
        string[] first = ["train-clip", "--config", "tiny", "--out", temp.Sub("clip"), "--steps", "2", "--batch", "4", "--checkpoint-every", "1"];
        Assert.Equal(0, ServingProcess.Run(first).ExitCode);
        string checkpoint = temp.Sub("clip/checkpoint.bin");

        var tooShort = ServingProcess.Run("train-clip", "--out", temp.Sub("clip"), "--resume", checkpoint, "--steps", "2");
        var clash = ServingProcess.Run("train-clip", "--out", temp.Sub("clip"), "--resume", checkpoint, "--batch", "8");
        var extended = ServingProcess.Run("train-clip", "--out", temp.Sub("clip"), "--resume", checkpoint, "--steps", "3", "--checkpoint-every", "1");

        Assert.Equal(2, tooShort.ExitCode);
        Assert.Equal(2, clash.ExitCode);
        Assert.True(extended.ExitCode == 0, extended.Stderr);
        Assert.Equal(["1", "2", "3"], File.ReadAllLines(temp.Sub("clip/training_log.csv")).Skip(1).Select(line => line.Split(',')[0]));
    }

    [Theory]
    [InlineData("train-clip", "--out", "OUT", "--batch", "1")]
    [InlineData("train-clip", "--out", "OUT", "--config", "huge")]
    [InlineData("train-clip", "--out", "OUT", "--checkpoint-every", "0")]
    [InlineData("eval-debias", "--model", "MISSING")]
    [InlineData("shapes-world", "--out", "OUT", "--count", "0")]
    public void BadArgumentsExitWithTwo(params string[] args)
    {
        using var temp = new TempFolder();
        string[] resolved = [.. args.Select(a => a is "OUT" or "MISSING" ? temp.Sub(a.ToLowerInvariant()) : a)];
        var result = ServingProcess.Run(resolved);
        Assert.True(result.ExitCode == 2, $"exit {result.ExitCode}: {result.Stderr}");
        Assert.Contains("error", result.Stderr);
    }

    [Fact]
    public void ShapesWorldDrawsScenesWithCaptions()
    {
        using var temp = new TempFolder();
        var result = ServingProcess.Run("shapes-world", "--out", temp.Sub("world"), "--count", "3");
        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(3, File.ReadAllLines(temp.Sub("world/captions.txt")).Length);
        Assert.True(new FileInfo(temp.Sub("world/scene000.png")).Length > 100);
        Assert.True(new FileInfo(temp.Sub("world/grid.png")).Length > 100);
    }
}
