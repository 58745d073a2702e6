using Serving.Trainer.Evaluation;

namespace Serving.Trainer.Tests.Evaluation;

public class NgramBaselineTests
{
    private static readonly int[] Train = [1, 2, 3, 1, 2, 4, 1, 2, 3, 0];

    [Theory]
    [InlineData(1)] // seen context
    [InlineData(5)] // never seen: the unigram alone
    public void BigramSumsToOneForEveryContext(int previous)
    {
        var baseline = new NgramBaseline(Train, vocabSize: 6);

        Assert.Equal(1.0, Enumerable.Range(0, 6).Sum(token => baseline.Bigram(previous, token)), 12);
        Assert.Equal(1.0, Enumerable.Range(0, 6).Sum(baseline.Unigram), 12);
    }

    [Fact]
    public void BigramUsesTheContext()
    {
        var baseline = new NgramBaseline(Train, vocabSize: 6);

        // "1" is always followed by "2": (3 − 0.75)/3 + 0.75·1/3·p_uni(2), p_uni(2) = (3 + 1)/(10 + 6).
        Assert.Equal(2.25 / 3 + 0.25 * 4.0 / 16, baseline.Bigram(1, 2), 12);
        Assert.True(baseline.Score([1, 2, 3], bigram: true).Loss < baseline.Score([1, 2, 3], bigram: false).Loss);
    }
}
