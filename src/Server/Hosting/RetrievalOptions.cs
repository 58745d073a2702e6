using System.ComponentModel.DataAnnotations;
using Serving.Server.Retrieval;

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

    /// <summary>
    /// Pixels (width × height, from the headers) of all the images of one request, checked before
    /// any is decoded: decoding costs CPU per stored pixel however small the file (a 3 KB PNG can
    /// hold 25 M). 128 M is a full batch of 64 two-megapixel images, or five at MaxImagePixels.
    /// </summary>
    [Range(1, long.MaxValue)]
    public long MaxPixelsPerRequest { get; init; } = 128_000_000;

    [Range(1, 100_000)]
    public int MaxTopK { get; init; } = 1000;

    /// <summary>
    /// Bytes of text-query embeddings kept, counted per entry as its key (UTF-16) plus its vector
    /// plus a fixed overhead: a 512-float entry for a short query is ~2.3 KB, so 64 MiB holds ~28,000
    /// of them, while a 1 MB query costs its 2 MB key and can no longer pin 10,000 × 2 MB. Replaces
    /// the entry count (TextCacheEntries) of earlier versions. An entry larger than this is not cached.
    /// </summary>
    [Range(1, long.MaxValue)]
    public long TextCacheBytes { get; init; } = 64L << 20;

    /// <summary>
    /// Largest size of retrieval.db (SQLite's max_page_count; 0: no limit but the disk's; the sqlite store only). An upload
    /// past it, like one onto a full disk, is refused whole with 507 Insufficient Storage.
    /// </summary>
    [Range(0, long.MaxValue)]
    public long MaxStoreBytes { get; init; }

    /// <summary>
    /// Where collections are stored: <c>sqlite</c> (retrieval.db in the data directory; one server) or
    /// <c>postgres</c> (<see cref="ConnectionString"/>; any number of replicas share it, each keeping
    /// its own exact index and following the others' writes through LISTEN/NOTIFY).
    /// </summary>
    public string Store { get; init; } = RetrievalStores.Sqlite;

    /// <summary>The Npgsql connection string of the <c>postgres</c> store (e.g. <c>Host=db;Database=serving;Username=serving;Password=…</c>).</summary>
    public string? ConnectionString { get; init; }

    /// <summary>
    /// With the <c>postgres</c> store, how often a replica reads the change log when no NOTIFY came:
    /// the longest a lost notification can delay another replica's write (NOTIFY itself takes ms).
    /// </summary>
    [Range(1, 86_400)]
    public int FollowPollSeconds { get; init; } = 5;

    /// <summary>Images per ONNX Runtime call: bounds the activation memory of one run.</summary>
    [Range(1, 1024)]
    public int ImageBatchSize { get; init; } = 16;
}
