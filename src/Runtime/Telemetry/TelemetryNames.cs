namespace Serving.Runtime.Telemetry;

/// <summary>
/// Every metric, span and attribute name Serving emits, in one place. GenAI names follow the
/// OpenTelemetry semantic conventions (REFERENCE §5); Serving's own are under <c>serving.</c>.
/// Prometheus sees dots as underscores, the unit as a suffix (<c>_seconds</c>, <c>_bytes</c>,
/// <c>_ratio</c>) and <c>_total</c> on counters; docs/telemetry.md maps them to vLLM's names.
/// </summary>
public static class TelemetryNames
{
    /// <summary>The Meter's and the ActivitySource's name (what an OpenTelemetry SDK subscribes to).</summary>
    public const string Source = "Serving";

    // GenAI semantic conventions.
    public const string RequestDuration = "gen_ai.server.request.duration";
    public const string TimeToFirstToken = "gen_ai.server.time_to_first_token";
    public const string TimePerOutputToken = "gen_ai.server.time_per_output_token";
    public const string TokenUsage = "gen_ai.client.token.usage";

    public const string OperationName = "gen_ai.operation.name";
    public const string RequestModel = "gen_ai.request.model";
    public const string TokenType = "gen_ai.token.type";
    public const string ErrorType = "error.type";
    public const string FinishReason = "gen_ai.response.finish_reason";

    // Engine (one series per model).
    public const string RequestsRunning = "serving.requests.running";
    public const string RequestsWaiting = "serving.requests.waiting";
    public const string RequestsFinished = "serving.requests.finished";
    public const string QueueTime = "serving.request.queue_time";
    public const string PrefillTime = "serving.request.prefill_time";
    public const string DecodeTime = "serving.request.decode_time";
    public const string BatchSize = "serving.batch.size";
    public const string PromptTokens = "serving.prompt_tokens";
    public const string CachedPromptTokens = "serving.prompt_tokens.cached";
    public const string GenerationTokens = "serving.generation_tokens";
    public const string KvUsedBytes = "serving.kv_cache.used";
    public const string KvCapacityBytes = "serving.kv_cache.capacity";
    public const string KvUsage = "serving.kv_cache.usage";
    public const string KvAllocatedBytes = "serving.kv_cache.allocated";
    public const string KvCachedBytes = "serving.kv_cache.cached";
    public const string Preemptions = "serving.preemptions";
    public const string StructuredMaskTime = "serving.structured_output.mask.time";
    public const string KvEvictedTokens = "serving.kv_cache.evicted_tokens";
    public const string KvCompressions = "serving.kv_cache.compressions";
    public const string KvPolicy = "serving.kv_cache.policy";

    // Kernels, embeddings and retrieval.
    public const string SparseKernel = "serving.sparse.kernel";
    public const string Isa = "serving.sparse.isa";
    public const string ModelDevice = "serving.model.device";
    public const string Device = "serving.device";
    public const string EmbeddingDuration = "serving.embedding.duration";
    public const string InputType = "serving.input.type";
    public const string RetrievalSearchDuration = "serving.retrieval.search.duration";
    public const string RetrievalIndexItems = "serving.retrieval.index.items";
    public const string Collection = "serving.collection";

    // vLLM's names beside ours, for fleet routers (the Gateway API Inference Extension's endpoint
    // picker, llm-d) that read each replica's queue and KV usage by these names. Same values as
    // ours, labelled model_name as vLLM labels them. Prometheus adds _total to the counters.
    public const string VllmRequestsWaiting = "vllm:num_requests_waiting";
    public const string VllmRequestsRunning = "vllm:num_requests_running";
    public const string VllmKvCacheUsage = "vllm:kv_cache_usage_perc";
    public const string VllmPrefixCacheQueries = "vllm:prefix_cache_queries";
    public const string VllmPrefixCacheHits = "vllm:prefix_cache_hits";
    public const string VllmPreemptions = "vllm:num_preemptions";
    public const string VllmModelName = "model_name";

    // Span names of the engine's phases (children of the request span "{operation} {model}") and the eviction event.
    public const string QueueSpan = "queue";
    public const string PrefillSpan = "prefill";
    public const string DecodeSpan = "decode";
    public const string EvictionEvent = "kv_cache.eviction";
}
