using Serving.Runtime.KvCompression;

namespace Serving.Runtime.Generation;

/// <summary>Limits of one model's engine; immutable once the engine starts.</summary>
public sealed record EngineOptions
{
    /// <summary>KV bytes all admitted sequences may reserve together.</summary>
    public long KvCacheBytes { get; init; } = 1L << 30;

    /// <summary>Sequences that may wait for KV memory; more are refused (HTTP 429).</summary>
    public int MaxQueueLength { get; init; } = 256;

    /// <summary>Sequences decoded together in one call.</summary>
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>Prompt tokens prefilled per step, so a long prompt does not stall running streams for long.</summary>
    public int MaxPrefillTokensPerStep { get; init; } = 512;

    /// <summary>Bytes of prompt-prefix KV kept for reuse; 0 turns the prefix cache off.</summary>
    public long PrefixCacheBytes { get; init; } = 256L << 20;

    /// <summary>Tokens per prefix-cache block (vLLM's default is 16).</summary>
    public int PrefixBlockTokens { get; init; } = 16;

    /// <summary>KV-cache compression for requests that do not choose their own policy and budget.</summary>
    public KvCompressionOptions KvCompression { get; init; } = new();
}
