using Serving.Runtime.KvCompression;

namespace Serving.Runtime.Generation;

/// <summary>Limits of one model's engine; immutable once the engine starts.</summary>
public sealed record EngineOptions
{
    /// <summary>The KV block pool, allocated once at start: every sequence's cache lives in it, and nothing else holds KV.</summary>
    public long KvCacheBytes { get; init; } = 1L << 30;

    /// <summary>Tokens per KV block (vLLM's default is 16): the unit of allocation and of prefix sharing.</summary>
    public int BlockTokens { get; init; } = 16;

    /// <summary>Sequences that may wait for KV blocks; more are refused (HTTP 429).</summary>
    public int MaxQueueLength { get; init; } = 256;

    /// <summary>Sequences decoded together in one call.</summary>
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>Prompt tokens prefilled per step, so a long prompt does not stall running streams for long.</summary>
    public int MaxPrefillTokensPerStep { get; init; } = 512;

    /// <summary>
    /// Share the KV blocks of common prompt prefixes: full blocks stay cached in the pool after
    /// their sequence ends, until the pool needs them (least recently used first).
    /// </summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>KV-cache compression for requests that do not choose their own policy and budget.</summary>
    public KvCompressionOptions KvCompression { get; init; } = new();
}
