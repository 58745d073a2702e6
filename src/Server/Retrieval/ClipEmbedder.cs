using System.Collections.Concurrent;
using System.Text;
using System.Text.RegularExpressions;
using Microsoft.Extensions.Caching.Memory;
using Microsoft.Extensions.Options;
using Serving.Runtime.Models.Clip;
using Serving.Runtime.Telemetry;
using Serving.Runtime.Vision;
using Serving.Server.Hosting;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>
/// The CLIP models of the catalog, each loaded on first use, and a cache of text embeddings bounded
/// in bytes (<see cref="RetrievalOptions.TextCacheBytes"/>), keyed by model and normalised text (the tokenizer's own normalisation, so two
/// keys never tokenise differently): a repeated search query skips the text tower.
/// </summary>
public sealed partial class ClipEmbedder : IDisposable
{
    private readonly ConcurrentDictionary<string, Lazy<ClipModel>> _models = new(StringComparer.Ordinal);
    private readonly MemoryCache _textCache;
    private readonly RetrievalOptions _options;
    private readonly ServingTelemetry _telemetry;

    public ClipEmbedder(ModelCatalog catalog, IOptions<RetrievalOptions> options, ServingTelemetry telemetry)
    {
        _options = options.Value;
        _telemetry = telemetry;
        _textCache = new MemoryCache(new MemoryCacheOptions { SizeLimit = _options.TextCacheBytes, TrackStatistics = true });
        foreach (ModelEntry entry in catalog.OfType(ClipConfig.ModelType))
        {
            _models[entry.Id] = new Lazy<ClipModel>(() => ClipModel.Load(entry.Folder), LazyThreadSafetyMode.ExecutionAndPublication);
        }
    }

    /// <summary>Text embeddings served from the cache (hits) rather than the text tower, since start.</summary>
    public long CacheHits => Interlocked.Read(ref _cacheHits);

    private long _cacheHits;

    /// <summary>
    /// What an entry costs beyond its key's characters and its floats: the string and array headers
    /// (~50 B) and MemoryCache's entry object and its dictionary slot (~150 B).
    /// </summary>
    private const long EntryOverheadBytes = 200;

    /// <summary>Text embeddings in the cache now.</summary>
    public long TextCacheCount => _textCache.GetCurrentStatistics()?.CurrentEntryCount ?? _textCache.Count;

    /// <summary>Bytes the cache accounts for now (never above <see cref="RetrievalOptions.TextCacheBytes"/>).</summary>
    public long TextCacheBytes => _textCache.GetCurrentStatistics()?.CurrentEstimatedSize ?? 0;

    /// <summary>An entry's real size: the key in UTF-16, the vector's floats, the overhead.</summary>
    private static long EntryBytes(string key, float[] vector) => 2L * key.Length + 4L * vector.Length + EntryOverheadBytes;

    public bool IsClipModel(string id) => _models.ContainsKey(id);

    public IEnumerable<string> ModelIds => _models.Keys;

    /// <summary>The model, or a 404 naming the CLIP models served.</summary>
    public ClipModel Model(string id, string param = "model") =>
        _models.TryGetValue(id, out Lazy<ClipModel>? model)
            ? model.Value
            : throw new ApiException(StatusCodes.Status404NotFound,
                $"The model '{id}' is not a CLIP model served here (CLIP models: {string.Join(", ", _models.Keys.Order())}).", param, "model_not_found");

    public float[][] EmbedTexts(string modelId, IReadOnlyList<string> texts)
    {
        ClipModel model = Model(modelId);
        var result = new float[texts.Count][];
        var missing = new List<int>();
        for (int i = 0; i < texts.Count; i++)
        {
            if (_textCache.TryGetValue(Key(modelId, texts[i]), out float[]? cached))
            {
                result[i] = cached!;
                Interlocked.Increment(ref _cacheHits);
            }
            else
            {
                missing.Add(i);
            }
        }

        if (missing.Count > 0)
        {
            using ServingTelemetry.Timing timing = _telemetry.TimeEmbedding(modelId, "text");
            float[][] computed = model.EmbedTexts([.. missing.Select(i => texts[i])]);
            for (int k = 0; k < missing.Count; k++)
            {
                result[missing[k]] = computed[k];
                string key = Key(modelId, texts[missing[k]]);
                _textCache.Set(key, computed[k], new MemoryCacheEntryOptions { Size = EntryBytes(key, computed[k]) });
            }
        }

        return result;
    }

    /// <summary>Decodes a request's images at the size the model's preprocessing needs, within the per-request pixel budget.</summary>
    public RgbImage[] DecodeImages(string modelId, IReadOnlyList<(byte[] Bytes, string Param)> images) =>
        ImageInput.DecodeAll(images, _options, Model(modelId).Processor.ShortestEdge);

    public float[][] EmbedImages(string modelId, IReadOnlyList<RgbImage> images)
    {
        ClipModel model = Model(modelId);
        using ServingTelemetry.Timing timing = _telemetry.TimeEmbedding(modelId, "image");
        var result = new List<float[]>(images.Count);
        for (int start = 0; start < images.Count; start += _options.ImageBatchSize)
        {
            result.AddRange(model.EmbedImages([.. images.Skip(start).Take(_options.ImageBatchSize)]));
        }

        return [.. result];
    }

    private static string Key(string model, string text) =>
        model + "\n" + Whitespace().Replace(text.Normalize(NormalizationForm.FormC), " ").Trim().ToLowerInvariant();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Whitespace();

    public void Dispose()
    {
        _textCache.Dispose();
        foreach (Lazy<ClipModel> model in _models.Values.Where(m => m.IsValueCreated))
        {
            model.Value.Dispose();
        }
    }
}
