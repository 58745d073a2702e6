namespace Serving.Cli.Tests;

public class TrainCommandTests
{
    /// <summary>~6 K tokens of plain English: enough for 5% validation to fill a 32-token window.</summary>
    private static string Corpus() => string.Concat(Enumerable.Repeat(
        "In the beginning God created the heaven and the earth.\nAnd the earth was without form, and void.\n", 150));

    private static string[] Train(TempFolder temp, params string[] extra)
    {
        File.WriteAllText(temp.Sub("corpus.txt"), Corpus());
        return ["train", "--corpus", temp.Sub("corpus.txt"), "--out", temp.Sub("model"), "--seq-len", "32", "--batch", "2", .. extra];
    }

    [Fact]
    public void TrainsAFolderThatGenerateLoads()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);

        var trained = ServingProcess.Run(Train(temp, "--steps", "6", "--checkpoint-every", "3"));

        Assert.True(trained.ExitCode == 0, trained.Stderr);
        Assert.StartsWith("validation loss: ", trained.Stdout);
        Assert.Equal(8, File.ReadAllLines(temp.Sub("model/training_log.csv")).Length); // header, 6 steps, final validation
        var generated = ServingProcess.Run("generate", "--model", temp.Sub("model"), "--prompt", "In the", "--max-tokens", "3");
        Assert.True(generated.ExitCode == 0, generated.Stderr);
        var scored = ServingProcess.Run("eval-ppl", "--model", temp.Sub("model"), "--text", temp.Sub("corpus.txt"), "--seq-len", "32", "--max-windows", "4",
            "--baselines-from", temp.Sub("corpus.txt"));
        Assert.True(scored.ExitCode == 0, scored.Stderr);
        string[] lines = scored.Stdout.Trim().Split('\n');
        Assert.StartsWith("tokens: 128, windows: 4 x 32, loss: ", lines[0]);
        Assert.StartsWith("unigram: tokens: ", lines[1]);
        Assert.StartsWith("bigram: tokens: ", lines[2]);
    }

    [Theory]
    [InlineData("--seq-len", "0")]
    [InlineData("--seq-len", "5000")]
    public void EvalPplBadArgumentsExitWithTwo(params string[] extra)
    {
        using var temp = new TempFolder();
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", temp.Sub("tiny")).ExitCode);
        File.WriteAllText(temp.Sub("text.txt"), Corpus());

        var result = ServingProcess.Run(["eval-ppl", "--model", temp.Sub("tiny"), "--text", temp.Sub("text.txt"), .. extra]);

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error:", result.Stderr);
    }

    [Fact]
    public void ResumeContinuesToTheSavedStepCount()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);
        Assert.Equal(0, ServingProcess.Run(Train(temp, "--steps", "4", "--checkpoint-every", "2")).ExitCode);

        var resumed = ServingProcess.Run("train", "--corpus", temp.Sub("corpus.txt"), "--out", temp.Sub("model"), "--resume", temp.Sub("model/checkpoint.bin"));

        Assert.True(resumed.ExitCode == 0, resumed.Stderr);
    }

    [Fact]
    public void CorpusTokenizerIsKeptInTheExportedFolder()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);

        var trained = ServingProcess.Run(Train(temp, "--steps", "2", "--tokenizer", "corpus"));

        Assert.True(trained.ExitCode == 0, trained.Stderr);
        string vocabulary = File.ReadAllText(temp.Sub("model/tokenizer.json"));
        Assert.Contains("\u2581beginning", vocabulary);
    }

    [Fact]
    public void DivergedRunExitsWithOne()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);

        var result = ServingProcess.Run(Train(temp, "--steps", "20", "--lr", "1e6"));

        Assert.Equal(1, result.ExitCode);
        Assert.Contains("lower the learning rate", result.Stderr);
    }

    [Theory]
    [InlineData("--steps", "0")]
    [InlineData("--lr", "-1")]
    [InlineData("--config", "huge")]
    [InlineData("--checkpoint-every", "0")]
    [InlineData("--resume", "missing.bin")]
    public void BadArgumentsExitWithTwo(params string[] extra)
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);

        var result = ServingProcess.Run(Train(temp, extra));

        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error:", result.Stderr);
    }

    [Fact]
    public void ResumeRefusesOptionsTheCheckpointFixes()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);
        Assert.Equal(0, ServingProcess.Run(Train(temp, "--steps", "2")).ExitCode);

        var result = ServingProcess.Run("train", "--corpus", temp.Sub("corpus.txt"), "--out", temp.Sub("model"),
            "--resume", temp.Sub("model/checkpoint.bin"), "--lr", "0.1");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--lr", result.Stderr);
    }
}
