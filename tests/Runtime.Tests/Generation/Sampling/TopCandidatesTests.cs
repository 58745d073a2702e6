using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class TopCandidatesTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    [InlineData(500)]
    public void SelectFrom_KeepsTheLargestBestFirst_TiesToTheLowerId(int capacity)
    {
        Random random = new(capacity);
        // Values from a small set so that ties are everywhere.
        float[] values = [.. Enumerable.Range(0, 500).Select(_ => (float)random.Next(40))];
        int[] expected = [.. Enumerable.Range(0, values.Length).OrderByDescending(i => values[i]).ThenBy(i => i).Take(capacity)];
        TopCandidates candidates = new(capacity);

        candidates.SelectFrom(values);

        Assert.Equal(expected, candidates.Ids.ToArray());
        Assert.Equal(expected.Select(i => values[i]), candidates.Values.ToArray());
    }

    [Fact]
    public void SelectFrom_FewerValuesThanCapacity_KeepsThemAll()
    {
        TopCandidates candidates = new(10);

        candidates.SelectFrom([2f, float.MinValue, 5f]);

        Assert.Equal([2, 0, 1], candidates.Ids.ToArray());
    }
}
