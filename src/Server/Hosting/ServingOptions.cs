using System.ComponentModel.DataAnnotations;
using Serving.Runtime.KvCompression;

namespace Serving.Server.Hosting;

/// <summary>
/// The <c>Serving</c> configuration section (appsettings.json, environment variables such as
/// <c>Serving__KvCacheBytes</c>, or command-line <c>--Serving:KvCacheBytes=...</c>).
/// Bound and validated once at start; immutable afterwards.
/// </summary>
public sealed class ServingOptions
{
    public const string Section = "Serving";

    /// <summary>Short command-line switches of the server: <c>--device cuda:1</c> is <c>--Serving:Device=cuda:1</c>.</summary>
    public static IDictionary<string, string> CommandLineSwitches { get; } = new Dictionary<string, string> { ["--device"] = "Serving:Device" };

    /// <summary>Where demo models and stored collections live; default <c>~/.local/share/serving</c>.</summary>
    public string DataDirectory { get; init; } =
        Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.LocalApplicationData, Environment.SpecialFolderOption.DoNotVerify), "serving");

    /// <summary>The models to serve; empty means the built-in demo models.</summary>
    public List<ModelOptions> Models { get; init; } = [];

    /// <summary>Bytes of KV cache all running sequences of one model may hold together (default 1 GiB).</summary>
    [Range(1L << 16, long.MaxValue)]
    public long KvCacheBytes { get; init; } = 1L << 30;

    /// <summary>Requests that may wait for KV memory; one more is refused with 429.</summary>
    [Range(1, 1_000_000)]
    public int MaxQueueLength { get; init; } = 256;

    /// <summary>Sequences decoded together in one ONNX Runtime call.</summary>
    [Range(1, 4096)]
    public int MaxBatchSize { get; init; } = 64;

    /// <summary>Prompt tokens prefilled per step, so a long prompt does not stall running streams.</summary>
    [Range(16, 1 << 20)]
    public int MaxPrefillTokensPerStep { get; init; } = 512;

    /// <summary>Largest request body accepted; larger gets 413 (default 16 MiB).</summary>
    [Range(1024, long.MaxValue)]
    public long MaxRequestBodyBytes { get; init; } = 16L << 20;

    /// <summary>Share the KV blocks of common prompt prefixes across requests (kept in the pool until it needs them).</summary>
    public bool PrefixCaching { get; init; } = true;

    /// <summary>A request still running after this long is cancelled and its KV memory freed.</summary>
    [Range(1, 86_400)]
    public int RequestTimeoutSeconds { get; init; } = 600;

    /// <summary>
    /// Seconds running requests may take to finish once the host stops (SIGTERM); new ones get 503 meanwhile. What
    /// still runs after that is cancelled: a 503 body, or mid-stream an error event and [DONE]. 0 cancels at once.
    /// The host's ShutdownTimeout is this plus <see cref="ShutdownDrain.StopMargin"/>; Kubernetes'
    /// terminationGracePeriodSeconds should be longer still.
    /// </summary>
    public int ShutdownDrainSeconds { get; init; } = 30;

    /// <summary>
    /// Where decoders run: <c>auto</c> (default: CUDA device 0 when it can run here, else the CPU, with the
    /// reason logged once), <c>cpu</c>, or <c>cuda</c> / <c>cuda:N</c> (start fails, with the reason, when it
    /// cannot run). The CLI's <c>--device</c> is the same. CLIP models run on the CPU.
    /// </summary>
    public string Device { get; init; } = "auto";

    /// <summary>
    /// The element type of each decoder's KV pool: <c>fp16</c> (default, as llama.cpp's cache type) or
    /// <c>fp32</c> (vLLM's kv_cache_dtype). fp16 rounds each stored key and value to nearest even and holds
    /// twice the tokens in <see cref="KvCacheBytes"/>; attention math stays fp32 (docs/BENCHMARKS.md
    /// "KV cache dtype": the same greedy tokens on the demo and 270M models, decode as fast or faster).
    /// </summary>
    [AllowedValues("fp32", "fp16")]
    public string KvCacheDtype { get; init; } = "fp16";

    /// <summary>ONNX Runtime intra-op threads per model; 0 uses every core.</summary>
    [Range(0, 1024)]
    public int IntraOpThreads { get; init; }

    /// <summary>
    /// KV-cache compression for requests that do not choose their own (<c>kv_policy</c>,
    /// <c>kv_budget</c>): policy none (default), triattention, window or knorm, budget, beta,
    /// protect_recent, protect_prompt, per_layer.
    /// </summary>
    public KvCompressionOptions KvCompression { get; init; } = new();

    /// <summary>
    /// Keys clients must send as <c>Authorization: Bearer KEY</c> (<c>Serving__ApiKeys__0=...</c>); with none here
    /// and no <see cref="ApiKeysFile"/>, every route is open.
    /// </summary>
    public List<string> ApiKeys { get; init; } = [];

    /// <summary>A file of more keys, one a line; blank lines and lines starting with <c>#</c> are skipped. Read once at start.</summary>
    public string? ApiKeysFile { get; init; }

    /// <summary>With API keys on, <c>/metrics</c> and <c>/dashboard</c> need a key too (by default they stay open, like the health probes).</summary>
    public bool ProtectMetrics { get; init; }

    /// <summary>Requests a minute each API key may make (<c>Serving:RateLimit:RequestsPerMinute</c>); 0, the default, is no limit.</summary>
    public RateLimitOptions RateLimit { get; init; } = new();

    /// <summary>Origins whose browser pages may call the API; none (the default) sends no CORS headers, so browsers block cross-origin reads.</summary>
    public CrossOriginOptions Cors { get; init; } = new();
}

/// <summary>The <c>Serving:Cors</c> section.</summary>
public sealed class CrossOriginOptions
{
    /// <summary>Origins as browsers send them (<c>https://app.example.com</c>, no path), or <c>*</c> for any.</summary>
    public List<string> AllowedOrigins { get; init; } = [];
}

/// <summary>One served model: the id clients send in <c>model</c> and its Hugging Face-style folder.</summary>
public sealed class ModelOptions
{
    [Required(AllowEmptyStrings = false)]
    public string Id { get; init; } = "";

    [Required(AllowEmptyStrings = false)]
    public string Path { get; init; } = "";

    /// <summary>The .onnx file inside the folder (e.g. <c>onnx/model_q4.onnx</c>); wins over <see cref="Dtype"/>.</summary>
    public string? OnnxFile { get; init; }

    /// <summary>
    /// The weight variant as transformers.js names it: fp32, fp16, q8, q4 (… int8, uint8, q4f16, bnb4) open
    /// onnx/model.onnx, model_fp16, model_quantized, model_q4. Default: genai_config.json's file, else
    /// config.json's <c>transformers.js_config.dtype</c>, else onnx/model.onnx.
    /// </summary>
    public string? Dtype { get; init; }
}

/// <summary>The <c>Serving:RateLimit</c> section: a fixed one-minute window per API key (keys off: no limit).</summary>
public sealed class RateLimitOptions
{
    public int RequestsPerMinute { get; init; }
}
