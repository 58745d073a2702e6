namespace Serving.Cli.Tests;

public class CorpusCommandTests
{
    [Fact]
    public void KjvWritesTrainAndHeldOutBooks()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);
        File.WriteAllLines(temp.Sub("bible.txt"),
        [
            "Ge1:1 In the beginning God created the heaven and the earth.",
            "Mark1:1 The beginning of the gospel of Jesus Christ, the Son of God;",
            "Rev22:21 The grace of our Lord Jesus Christ be with you all. Amen.",
        ]);

        var result = ServingProcess.Run("corpus", "kjv", "--bible", temp.Sub("bible.txt"), "--out", temp.Sub("kjv"));

        Assert.True(result.ExitCode == 0, result.Stderr);
        Assert.Equal(["In the beginning God created the heaven and the earth.", "The grace of our Lord Jesus Christ be with you all. Amen."],
            File.ReadAllLines(temp.Sub("kjv/train.txt")));
        Assert.Equal(["The beginning of the gospel of Jesus Christ, the Son of God;"], File.ReadAllLines(temp.Sub("kjv/valid.txt")));
    }

    [Fact]
    public void TextThatIsNotTheBibleExitsWithTwo()
    {
        using var temp = new TempFolder();
        Directory.CreateDirectory(temp.Path);
        File.WriteAllText(temp.Sub("notes.txt"), "just some notes\n");

        var result = ServingProcess.Run("corpus", "kjv", "--bible", temp.Sub("notes.txt"), "--out", temp.Sub("kjv"));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("line 1", result.Stderr);
    }
}
