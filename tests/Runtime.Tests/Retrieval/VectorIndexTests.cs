using Serving.Runtime.Retrieval;

namespace Serving.Runtime.Tests.Retrieval;

public sealed class VectorIndexTests
{
    [Fact]
    public void ReturnsTheTopKBestFirstLikeASort()
    {
        var random = new Random(3);
        var index = new VectorIndex(8, capacity: 2);
        var vectors = new Dictionary<string, float[]>();
        for (int i = 0; i < 500; i++)
        {
            float[] v = [.. Enumerable.Range(0, 8).Select(_ => (float)random.NextDouble() - 0.5f)];
            vectors[$"item{i}"] = v;
            index.Upsert($"item{i}", v);
        }

        float[] query = [.. Enumerable.Range(0, 8).Select(_ => (float)random.NextDouble() - 0.5f)];
        var expected = vectors.Select(p => (p.Key, Score: p.Value.Zip(query, (a, b) => a * b).Sum())).OrderByDescending(p => p.Score).Take(7).Select(p => p.Key);
        Assert.Equal(expected, index.Search(query, 7).Select(h => h.Id));
    }

    [Fact]
    public void UpsertReplacesAndRemoveForgets()
    {
        var index = new VectorIndex(2);
        index.Upsert("a", [1, 0]);
        index.Upsert("b", [0, 1]);
        index.Upsert("c", [0.7f, 0.7f]);
        index.Upsert("a", [-1, 0]);
        Assert.Equal(3, index.Count);
        Assert.Equal("c", index.Search([1, 0], 1)[0].Id);
        Assert.True(index.Remove("c"));
        Assert.False(index.Remove("c"));
        Assert.Equal(["b", "a"], index.Search([0.1f, 1], 5).Select(h => h.Id));
    }

    [Fact]
    public void FiltersAndRefusesTheWrongDimension()
    {
        var index = new VectorIndex(2);
        index.Upsert("keep", [0, 1]);
        index.Upsert("drop", [1, 0]);
        Assert.Equal(["keep"], index.Search([1, 0], 5, id => id == "keep").Select(h => h.Id));
        Assert.Throws<ArgumentException>(() => index.Search([1, 0, 0], 1));
    }

    [Fact]
    public void ASplitScanFindsWhatOneScanFinds()
    {
        // 200k rows: above the 64k rows per task, so the scan is split wherever there are ≥ 2 cores.
        var random = new Random(9);
        var index = new VectorIndex(4, capacity: 200_000);
        float[] query = [1, 0.5f, 0.25f, 0.125f];
        var scores = new List<(string Id, float Score)>();
        for (int i = 0; i < 200_000; i++)
        {
            float[] v = [.. Enumerable.Range(0, 4).Select(_ => (float)random.NextDouble())];
            string id = i.ToString(System.Globalization.CultureInfo.InvariantCulture);
            index.Upsert(id, v);
            scores.Add((id, System.Numerics.Tensors.TensorPrimitives.Dot(query, v)));
        }

        var expected = scores.OrderByDescending(s => s.Score).Take(5).Select(s => s.Id);
        Assert.Equal(expected, index.Search(query, 5).Select(h => h.Id));
    }
}
