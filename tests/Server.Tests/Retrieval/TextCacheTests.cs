using Microsoft.Extensions.DependencyInjection;
using Serving.Server.Retrieval;
using Serving.Server.Tests.Apis;

namespace Serving.Server.Tests.Retrieval;

/// <summary>The text-embedding cache is bounded in bytes, not entries: long distinct queries cannot pin memory.</summary>
public sealed class TextCacheTests
{
    private const long Bound = 1 << 20;

    [Fact]
    public void LargeDistinctTextsKeepTheCacheUnderItsByteBound()
    {
        using var server = new InMemoryServer(null, ("Serving:Retrieval:TextCacheBytes", Bound.ToString(System.Globalization.CultureInfo.InvariantCulture)));
        var embedder = server.Factory.Services.GetRequiredService<ClipEmbedder>();
        string filler = string.Concat(Enumerable.Repeat("a photo of a cat ", 6000)); // ~100K characters: a 200 KB key
        for (int i = 0; i < 20; i++)
        {
            embedder.EmbedTexts("clip-tiny", [$"query {i} {filler}"]);
            Assert.InRange(embedder.TextCacheBytes, 0, Bound);
        }

        // 20 entries of 200 KB would be 4 MB; at most 5 fit under 1 MiB.
        Assert.InRange(embedder.TextCacheCount, 1, 5);
    }

    [Fact]
    public void AShortQueryIsCachedAtItsKeyAndVectorBytes()
    {
        using var server = new InMemoryServer();
        var embedder = server.Factory.Services.GetRequiredService<ClipEmbedder>();
        float[] vector = embedder.EmbedTexts("clip-tiny", ["a red circle"])[0];
        embedder.EmbedTexts("clip-tiny", ["A  red circle "]);
        Assert.Equal(1, embedder.CacheHits);
        Assert.Equal(1, embedder.TextCacheCount);
        long keyBytes = 2L * "clip-tiny\na red circle".Length;
        Assert.InRange(embedder.TextCacheBytes, keyBytes + 4L * vector.Length, keyBytes + 4L * vector.Length + 1024);
    }
}
