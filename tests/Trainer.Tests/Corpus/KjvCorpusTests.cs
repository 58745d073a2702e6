using Serving.Trainer.Corpus;

namespace Serving.Trainer.Tests.Corpus;

public class KjvCorpusTests
{
    private static readonly string[] Lines =
    [
        "Ge1:1 In the beginning God created the heaven and the earth.",
        "Ruth1:1 Now it came to pass in the days when the judges ruled,",
        "",
        "1Jn1:1 That which was from the beginning,",
        "1Cor13:13 And now abideth faith, hope, charity, these three;",
    ];

    [Fact]
    public void StripsReferencesAndHoldsOutWholeBooks()
    {
        CorpusSplit split = KjvCorpus.Split(Lines, KjvCorpus.ValidationBooks);

        Assert.Equal("In the beginning God created the heaven and the earth.\nAnd now abideth faith, hope, charity, these three;\n", split.Train);
        Assert.Equal("Now it came to pass in the days when the judges ruled,\nThat which was from the beginning,\n", split.Validation);
        Assert.Equal((2, 2), (split.TrainVerses, split.ValidationVerses));
    }

    [Fact]
    public void RejectsLinesThatAreNotVerses()
    {
        var error = Assert.Throws<InvalidDataException>(() => KjvCorpus.Split(["Ge1:1 fine", "no reference here"], []));

        Assert.Contains("line 2", error.Message);
    }
}
