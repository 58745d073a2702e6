using System.ComponentModel.DataAnnotations;

namespace Serving.Server.Hosting;

/// <summary>Limits of the embeddings and retrieval APIs, section <c>Serving:Retrieval</c>; fixed after start.</summary>
public sealed class RetrievalOptions
{
    public const string Section = "Serving:Retrieval";

    /// <summary>Inputs in one <c>/v1/embeddings</c> request or items in one upload.</summary>
    [Range(1, 10_000)]
    public int MaxItemsPerRequest { get; init; } = 64;

    /// <summary>
    /// Largest image, width × height, checked from the header before decoding: 25 M pixels
    /// decode to 100 MB of RGBA, a decompression bomb of a few KB cannot ask for more.
    /// </summary>
    [Range(1, 1_000_000_000)]
    public long MaxImagePixels { get; init; } = 25_000_000;

    [Range(1, 100_000)]
    public int MaxTopK { get; init; } = 1000;

    /// <summary>Text-query embeddings kept (one entry each: 2 KB at 512 floats, ~20 MB at the default).</summary>
    [Range(1, 10_000_000)]
    public int TextCacheEntries { get; init; } = 10_000;

    /// <summary>
    /// Largest size of retrieval.db (SQLite's max_page_count; 0: no limit but the disk's). An upload
    /// past it, like one onto a full disk, is refused whole with 507 Insufficient Storage.
    /// </summary>
    [Range(0, long.MaxValue)]
    public long MaxStoreBytes { get; init; }

    /// <summary>Images per ONNX Runtime call: bounds the activation memory of one run.</summary>
    [Range(1, 1024)]
    public int ImageBatchSize { get; init; } = 16;
}
