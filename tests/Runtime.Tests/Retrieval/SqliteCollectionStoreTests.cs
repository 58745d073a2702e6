using Microsoft.Data.Sqlite;
using Serving.Runtime.Retrieval;

namespace Serving.Runtime.Tests.Retrieval;

public sealed class SqliteCollectionStoreTests : IDisposable
{
    private readonly TempFolder _folder = new();

    private SqliteCollectionStore Open() => SqliteCollectionStore.Open(_folder.File("retrieval.db"));

    [Fact]
    public void ItemsRoundTripAndSurviveReopening()
    {
        SqliteCollectionStore store = Open();
        Assert.True(store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 2, null, 1)));
        Assert.False(store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 2, null, 1)));
        store.Upsert("c", [new StoredItem("a", """{"k":1}""", [0.5f, -0.25f]), new StoredItem("b", "{}", [1, 0])]);
        store.Upsert("c", [new StoredItem("a", """{"k":2}""", [1, 1])]);
        SqliteConnection.ClearAllPools();

        SqliteCollectionStore reopened = Open();
        Assert.Equal("c", reopened.ListCollections().Single().Name);
        StoredItem a = reopened.Find("c", "a")!;
        Assert.Equal("""{"k":2}""", a.Metadata);
        Assert.Equal([1f, 1f], a.Vector);
        Assert.Equal(2, reopened.Items("c").Count());
    }

    [Fact]
    public void AFailureInTheMiddleOfABatchWritesNoneOfIt()
    {
        SqliteCollectionStore store = Open();
        store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 1, null, 1));
        // The second row has no metadata value: the provider refuses it after the first row went in.
        Assert.Throws<InvalidOperationException>(() => store.Upsert("c", [new StoredItem("a", "{}", [1]), new StoredItem("b", null!, [1])]));
        Assert.Empty(store.Items("c"));
    }

    [Fact]
    public void DeletingACollectionDeletesItsItems()
    {
        SqliteCollectionStore store = Open();
        store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 1, null, 1));
        store.Upsert("c", [new StoredItem("a", "{}", [1])]);
        Assert.True(store.DeleteCollection("c"));
        store.TryCreateCollection(new CollectionRecord("c", "clip-tiny", 1, null, 1));
        Assert.Empty(store.Items("c"));
    }

    [Fact]
    public void ABatchForACollectionThatDoesNotExistWritesNothing()
    {
        SqliteCollectionStore store = Open();
        Assert.False(store.Upsert("gone", [new StoredItem("a", "{}", [1])]));
        store.TryCreateCollection(new CollectionRecord("gone", "clip-tiny", 1, null, 1));
        Assert.Empty(store.Items("gone"));
        Assert.True(store.Upsert("gone", [new StoredItem("a", "{}", [1])]));
    }

    public void Dispose()
    {
        SqliteConnection.ClearAllPools();
        _folder.Dispose();
    }
}
