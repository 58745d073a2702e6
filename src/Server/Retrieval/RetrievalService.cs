using System.Collections.Concurrent;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.Options;
using Npgsql;
using Serving.Runtime.Retrieval;
using Serving.Runtime.Telemetry;
using Serving.Runtime.Vision;
using Serving.Server.Hosting;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>An item of an upload, before embedding: id (null: generate one), image bytes, metadata.</summary>
public sealed record NewItem(string? Id, byte[] Image, JsonObject Metadata);

/// <summary>What a search looks for: exactly one of text, image bytes or a vector.</summary>
public sealed record SearchQuery(string? Text, byte[]? Image, float[]? Vector, int TopK, JsonObject? Filter, bool? Debias);

/// <summary>
/// Image collections: a durable store (<see cref="ICollectionStore"/>: SQLite, or PostgreSQL shared
/// by replicas), exact in-memory indexes for search, rebuilt from the store at start. Every request
/// is validated and embedded before the store is touched, so bad input writes nothing; a batch is
/// one transaction, committed before the indexes change and before the answer. On a shared store
/// the indexes change only through the <see cref="StoreFollower"/>, in the store's commit order,
/// this replica's own writes included.
/// </summary>
public sealed partial class RetrievalService : IDisposable
{
    /// <summary>Null until opened; set once (a shared store that was unreachable at start is opened later by <see cref="TryOpen"/>).</summary>
    private volatile ICollectionStore? _store;
    private volatile string? _unavailable;
    private readonly string _dataDirectory;
    private readonly ClipEmbedder _embedder;
    private readonly RetrievalOptions _options;
    private readonly ConcurrentDictionary<string, CollectionState> _collections = new(StringComparer.Ordinal);
    private readonly SemaphoreSlim _catalogLock = new(1, 1);

    private readonly ServingTelemetry _telemetry;

    private readonly ILogger<RetrievalService> _logger;

    public RetrievalService(IOptions<ServingOptions> serving, IOptions<RetrievalOptions> options, ClipEmbedder embedder, ServingTelemetry telemetry,
        ILogger<RetrievalService> logger)
    {
        _options = options.Value;
        _embedder = embedder;
        _telemetry = telemetry;
        _logger = logger;
        telemetry.TrackIndexes(() => _collections.Values.Select(c => new IndexSize(c.Record.Name, c.Record.Model, c.Raw.Count)));
        _dataDirectory = serving.Value.DataDirectory;
        StoreLocation = RetrievalStores.Location(_options, _dataDirectory);
        TryOpen();
    }

    /// <summary>
    /// Opens the store and loads every collection; false (logged, <see cref="Unavailable"/> says why) when it
    /// cannot. Called at start, then, for a shared store that was unreachable, again until it opens.
    /// </summary>
    public bool TryOpen()
    {
        ICollectionStore? store = null;
        try
        {
            store = RetrievalStores.Open(_options, _dataDirectory);
            // The change log's position is read before the load: changes committed during it are applied again, harmlessly.
            Follower = store is PostgresCollectionStore shared
                ? new StoreFollower(shared, shared.LastSequence(), TimeSpan.FromSeconds(_options.FollowPollSeconds), this, _logger)
                : null;
            Load(store);
            _store = store;
            _unavailable = null;
            return true;
        }
        catch (Exception e) when (e is SqliteException or NpgsqlException or StoreUnavailableException or InvalidCastException or JsonException
            or IOException or UnauthorizedAccessException)
        {
            // A damaged store must not take chat down with it: retrieval answers 503 until it is repaired.
            (store as IDisposable)?.Dispose();
            Follower = null;
            _collections.Clear();
            string repair = IsShared
                ? "Retrieval is off until the database can be reached (this server tries again every few seconds)."
                : "Retrieval is off until it is repaired (README: Recovering a damaged retrieval.db).";
            string? previous = _unavailable;
            _unavailable = $"The retrieval store {StoreLocation} cannot be opened: {e.Message} {repair}";
            if (_unavailable != previous)
            {
                // Logged when the reason changes, not at every retry.
                LogStoreUnavailable(StoreLocation, e.Message, e);
            }

            return false;
        }
    }

    /// <summary>Closes the shared store's connections (the host disposes the service after the follower stopped).</summary>
    public void Dispose() => (_store as IDisposable)?.Dispose();

    /// <summary>Where the store is: the full path of retrieval.db, or the PostgreSQL server and database.</summary>
    public string StoreLocation { get; }

    /// <summary>True for the PostgreSQL store shared by replicas.</summary>
    public bool IsShared => _options.Store == RetrievalStores.Postgres;

    /// <summary>Follows the other replicas' writes (null unless the store is shared and open).</summary>
    public StoreFollower? Follower { get; private set; }

    /// <summary>Why the store could not be opened (null: it is open); the retrieval routes answer 503 with it.</summary>
    public string? Unavailable => _unavailable;

    /// <summary>The collections loaded at start (0 when the store is unavailable).</summary>
    public int Count => _collections.Count;

    private void Load(ICollectionStore store)
    {
        foreach (CollectionRecord record in store.ListCollections())
        {
            _collections[record.Name] = LoadState(store, record);
        }
    }

    private CollectionState LoadState(ICollectionStore store, CollectionRecord record)
    {
        CollectionState state = NewState(record);
        foreach (StoredItem item in store.Items(record.Name))
        {
            state.Index(item.Id, item.Vector, Metadata(record.Name, item));
        }

        return state;
    }

    /// <summary>A collection created or deleted on the shared store (by any replica): loaded again as stored now, or dropped.</summary>
    internal void Replace(string name, CollectionRecord? record)
    {
        if (record is null)
        {
            _collections.TryRemove(name, out _);
        }
        else
        {
            _collections[name] = LoadState(Store, record);
        }
    }

    /// <summary>Items written or deleted on the shared store: <paramref name="rows"/> are those of <paramref name="ids"/> that exist now.</summary>
    internal void Refresh(string name, string[] ids, IReadOnlyList<StoredItem> rows) =>
        _collections.GetValueOrDefault(name)?.Refresh(ids, rows, item => Metadata(name, item));

    /// <summary>
    /// After a committed write: the embedded store indexes it here; on a shared store the follower
    /// applies every change up to this one in commit order, so a write never overtakes another
    /// replica's earlier write of the same item. The write is durable either way: if the store went
    /// away just after the commit, the follower applies it when it reconnects.
    /// </summary>
    private async Task IndexAsync(Action index)
    {
        if (Follower is null)
        {
            index();
            return;
        }

        try
        {
            await Follower.CatchUpAsync();
        }
        catch (StoreUnavailableException e)
        {
            LogCatchUpFailed(e.Message);
        }
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "Retrieval: a write was committed but the store went away before this replica read it back ({Reason}); it is indexed after reconnecting.")]
    private partial void LogCatchUpFailed(string reason);

    [LoggerMessage(Level = LogLevel.Error, Message = "The retrieval store {Path} cannot be opened: {Reason} Chat and completions go on; the retrieval routes answer 503 until the store can be opened.")]
    private partial void LogStoreUnavailable(string path, string reason, Exception exception);

    /// <summary>The store, or a 503 naming the store and its error when it could not be opened.</summary>
    private ICollectionStore Store => _store ?? throw new ApiException(StatusCodes.Status503ServiceUnavailable, Unavailable!, null, "store_unavailable");

    private void ThrowIfUnavailable() => _ = Store;

    public RetrievalOptions Options => _options;

    public IEnumerable<CollectionState> Collections
    {
        get
        {
            ThrowIfUnavailable();
            return _collections.Values.OrderBy(c => c.Record.Name, StringComparer.Ordinal);
        }
    }

    public CollectionState Get(string name)
    {
        ThrowIfUnavailable();
        return _collections.TryGetValue(name, out CollectionState? state)
            ? state
            : throw ApiException.NotFound($"The collection '{name}' does not exist.", "name");
    }

    public async Task<CollectionState> CreateAsync(string name, string model, DebiasRequest? debias)
    {
        ThrowIfUnavailable();
        if (!CollectionName().IsMatch(name))
        {
            throw ApiException.Invalid("name", "a collection name is 1 to 64 letters, digits, '_', '-' or '.', starting with a letter or digit");
        }

        int dimension = _embedder.Model(model).Dimension;
        var (stored, transform) = debias is null ? (null, null) : DebiasSettings.Create(debias, new GroupEmbedder(this, model));
        var record = new CollectionRecord(name, model, dimension, stored?.ToJsonString(), DateTimeOffset.UtcNow.ToUnixTimeSeconds());
        var state = new CollectionState(record, transform);
        await _catalogLock.WaitAsync();
        try
        {
            if (_collections.ContainsKey(name) || !Store.TryCreateCollection(record))
            {
                throw new ApiException(StatusCodes.Status409Conflict, $"The collection '{name}' exists already.", "name", "collection_exists");
            }

            await IndexAsync(() => _collections[name] = state);
            return _collections.GetValueOrDefault(name) ?? state;
        }
        finally
        {
            _catalogLock.Release();
        }
    }

    public async Task DeleteAsync(string name)
    {
        CollectionState state = Get(name);
        await _catalogLock.WaitAsync();
        await state.WriteLock.WaitAsync();
        try
        {
            Store.DeleteCollection(name);
            await IndexAsync(() => _collections.TryRemove(name, out _));
        }
        finally
        {
            state.WriteLock.Release();
            _catalogLock.Release();
        }
    }

    /// <summary>Decodes, embeds and stores the items (all or none); returns their ids in order.</summary>
    public async Task<IReadOnlyList<string>> UpsertAsync(string name, IReadOnlyList<NewItem> items)
    {
        CollectionState state = Get(name);
        if (items.Count == 0 || items.Count > _options.MaxItemsPerRequest)
        {
            throw ApiException.Invalid("items", $"send 1 to {_options.MaxItemsPerRequest} items per request (got {items.Count})");
        }

        string[] ids = Ids(items);
        RgbImage[] images = _embedder.DecodeImages(state.Record.Model, [.. items.Select((item, i) => (item.Image, $"items[{i}].image"))]);
        float[][] vectors = _embedder.EmbedImages(state.Record.Model, images);
        var stored = items.Select((item, i) => new StoredItem(ids[i], item.Metadata.ToJsonString(), vectors[i])).ToArray();
        await state.WriteLock.WaitAsync();
        try
        {
            if (!_collections.ContainsKey(name))
            {
                throw ApiException.NotFound($"The collection '{name}' was deleted.", "name");
            }

            if (!Store.Upsert(name, stored))
            {
                throw ApiException.NotFound($"The collection '{name}' was deleted.", "name");
            }

            await IndexAsync(() =>
            {
                for (int i = 0; i < stored.Length; i++)
                {
                    state.Index(ids[i], vectors[i], items[i].Metadata);
                }
            });
        }
        finally
        {
            state.WriteLock.Release();
        }

        return ids;
    }

    /// <summary>The given ids (checked by <see cref="ItemUploads.ValidId"/> as they were read), or new ones; none twice.</summary>
    private static string[] Ids(IReadOnlyList<NewItem> items)
    {
        string[] ids = [.. items.Select(item => item.Id ?? Guid.NewGuid().ToString("N"))];
        return ids.Distinct(StringComparer.Ordinal).Count() == ids.Length
            ? ids
            : throw ApiException.Invalid("items", "an id appears twice in the batch");
    }

    public (StoredItem Item, JsonObject Metadata) GetItem(string name, string id)
    {
        Get(name);
        StoredItem item = Store.Find(name, id) ?? throw ApiException.NotFound($"The item '{id}' is not in the collection '{name}'.", "id");
        return (item, Metadata(name, item));
    }

    /// <summary>An item's stored metadata; a key stored twice (by an earlier version) keeps its last value, with a warning.</summary>
    private JsonObject Metadata(string collection, StoredItem item)
    {
        JsonObject metadata = StoredMetadata.Parse(item.Metadata, out bool hadDuplicates);
        if (hadDuplicates)
        {
            LogDuplicateKeys(collection, item.Id);
        }

        return metadata;
    }

    [LoggerMessage(Level = LogLevel.Warning, Message = "The item {Id} of {Collection} has metadata with a key twice (stored by an earlier version); the last value counts. Upload it again to store it clean.")]
    private partial void LogDuplicateKeys(string collection, string id);

    public async Task DeleteItemAsync(string name, string id)
    {
        CollectionState state = Get(name);
        await state.WriteLock.WaitAsync();
        try
        {
            if (!Store.Delete(name, id))
            {
                throw ApiException.NotFound($"The item '{id}' is not in the collection '{name}'.", "id");
            }

            await IndexAsync(() => state.Unindex(id));
        }
        finally
        {
            state.WriteLock.Release();
        }
    }

    public IReadOnlyList<(Hit Hit, JsonObject Metadata)> Search(string name, SearchQuery query)
    {
        CollectionState state = Get(name);
        if (query.TopK < 1 || query.TopK > _options.MaxTopK)
        {
            throw ApiException.Invalid("top_k", $"top_k must be between 1 and {_options.MaxTopK}");
        }

        using ServingTelemetry.Timing timing = _telemetry.TimeSearch(name, state.Record.Model);
        bool debias = query.Debias ?? state.Transform is not null;
        if (debias && state.Transform is null)
        {
            throw ApiException.Invalid("debias", $"the collection '{name}' has no debias settings");
        }

        float[] vector = QueryVector(state, query);
        if (debias)
        {
            vector = state.DebiasedUnit(vector);
        }

        VectorIndex index = debias ? state.Debiased! : state.Raw;
        Func<string, bool>? filter = query.Filter is { Count: > 0 } f ? id => state.Matches(id, f) : null;
        return [.. index.Search(vector, query.TopK, filter).Select(hit => (hit, state.Metadata.GetValueOrDefault(hit.Id) ?? []))];
    }

    private float[] QueryVector(CollectionState state, SearchQuery query)
    {
        int given = (query.Text is null ? 0 : 1) + (query.Image is null ? 0 : 1) + (query.Vector is null ? 0 : 1);
        if (given != 1)
        {
            throw ApiException.Invalid("query", "give exactly one of text, image or vector");
        }

        if (query.Text is not null)
        {
            return string.IsNullOrWhiteSpace(query.Text)
                ? throw ApiException.Invalid("text", "the text is empty")
                : _embedder.EmbedTexts(state.Record.Model, [query.Text])[0];
        }

        if (query.Image is not null)
        {
            return _embedder.EmbedImages(state.Record.Model, _embedder.DecodeImages(state.Record.Model, [(query.Image, "image")]))[0];
        }

        float[] vector = query.Vector!;
        if (vector.Length != state.Record.Dimension)
        {
            throw ApiException.Invalid("vector", $"the vector has {vector.Length} values; the collection's model gives {state.Record.Dimension}");
        }

        float norm = System.Numerics.Tensors.TensorPrimitives.Norm<float>(vector);
        if (!float.IsFinite(norm) || norm == 0)
        {
            throw ApiException.Invalid("vector", "the vector must be finite and non-zero");
        }

        return [.. vector.Select(v => v / norm)];
    }

    private static CollectionState NewState(CollectionRecord record) =>
        new(record, record.Debias is null ? null : DebiasSettings.Load(JsonNode.Parse(record.Debias)!.AsObject()));

    /// <summary>Embeds a new collection's debias groups with its model; nearest images come from a reference collection of the same model.</summary>
    private sealed class GroupEmbedder(RetrievalService service, string model) : IGroupEmbedder
    {
        public float[][] Texts(IReadOnlyList<string> texts) => service._embedder.EmbedTexts(model, texts);

        public float[][] Images(IReadOnlyList<byte[]> images, string param) =>
            service._embedder.EmbedImages(model, service._embedder.DecodeImages(model, [.. images.Select(image => (image, param))]));

        public float[][] Nearest(string collection, float[] query, int k, string param)
        {
            CollectionState reference = service._collections.TryGetValue(collection, out CollectionState? found)
                ? found
                : throw ApiException.Invalid(param, $"the reference collection '{collection}' does not exist");
            if (reference.Record.Model != model || reference.Raw.Count == 0)
            {
                throw ApiException.Invalid(param, $"the reference collection '{collection}' must hold images embedded by '{model}'");
            }

            return [.. reference.Raw.Search(query, k).Select(hit => service.Store.Find(collection, hit.Id)!.Vector)];
        }
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")]
    private static partial Regex CollectionName();
}
