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

    public static TheoryData<string, int> LargeCases() => new()
    {
        { "random", 20 }, { "random", 300 }, { "random", 1024 }, { "random", 5000 },
        { "ascending", 20 }, { "ascending", 1024 }, { "descending", 1024 },
        // Every sampled position (a multiple of 256) holds the largest value, so the floor
        // estimated from the samples is above the 2,000th largest and the pass must start over.
        { "samples-largest", 2000 },
    };

    [Theory]
    [MemberData(nameof(LargeCases))]
    public void SelectFrom_AGemmaSizedSpan_MatchesAFullSort(string layout, int capacity)
    {
        const int count = 262_144;
        Random random = new(capacity);
        float[] values = layout switch
        {
            "ascending" => [.. Enumerable.Range(0, count).Select(i => i / 7f)],
            "descending" => [.. Enumerable.Range(0, count).Select(i => -i / 7f)],
            "samples-largest" => [.. Enumerable.Range(0, count).Select(i => i % 256 == 0 ? 10f : random.Next(3000) / 1000f)],
            _ => [.. Enumerable.Range(0, count).Select(_ => (random.Next(20_000) - 10_000) / 100f)],
        };
        int[] expected = [.. Enumerable.Range(0, count).OrderByDescending(i => values[i]).ThenBy(i => i).Take(capacity)];
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
