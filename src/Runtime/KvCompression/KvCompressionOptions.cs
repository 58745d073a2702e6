namespace Serving.Runtime.KvCompression;

/// <summary>
/// How a sequence's KV cache is compressed (REFERENCE §1's schedule): when a compressed layer's
/// cache reaches <see cref="Budget"/> + <see cref="Beta"/> tokens, the policy's lowest-scored
/// tokens are evicted back to <see cref="Budget"/>. Only global-attention layers are compressed;
/// sliding-window layers keep at most their window anyway. Immutable; the server's defaults
/// come from configuration and a request may choose another policy and budget.
/// </summary>
public sealed record KvCompressionOptions
{
    /// <summary>Every policy name the API, the configuration and the CLI accept.</summary>
    public static readonly IReadOnlyList<string> PolicyNames = [None, "triattention", "window", "knorm"];

    public const string None = "none";

    /// <summary><c>none</c>, <c>triattention</c>, <c>window</c> (StreamingLLM) or <c>knorm</c>.</summary>
    public string Policy { get; init; } = None;

    /// <summary>Tokens each compressed layer keeps after a compression (B).</summary>
    public int Budget { get; init; } = 1024;

    /// <summary>Tokens added between compressions (β = 128 in the paper): compressing in bursts amortises the scoring.</summary>
    public int Beta { get; init; } = 128;

    /// <summary>Most recent tokens never evicted (the vLLM plugin protects 128).</summary>
    public int ProtectRecent { get; init; }

    /// <summary>Never evict prompt tokens (the paper's runs); the budget then counts generated tokens only.</summary>
    public bool ProtectPrompt { get; init; }

    /// <summary>Each layer chooses its own tokens instead of one set per KV head shared by every layer.</summary>
    public bool PerLayer { get; init; }

    public bool IsEnabled => Policy != None;

    /// <summary>
    /// The largest budget or interval accepted: 2^24 tokens is past any model's context, and keeps
    /// budget + prompt + β (the cap) far from int overflow, which would make the cap negative.
    /// </summary>
    public const int MaxTokens = 1 << 24;

    /// <summary>Tokens a compressed layer holds after compressing a sequence with <paramref name="promptLength"/> prompt tokens.</summary>
    public int KeepTokens(int promptLength) => Budget + (ProtectPrompt ? promptLength : 0);

    /// <summary>The most tokens a compressed layer ever holds: it is compressed before it would exceed this.</summary>
    public int CapTokens(int promptLength) => KeepTokens(promptLength) + Beta;

    /// <summary>
    /// Why these options cannot run on a model whose sliding layers keep
    /// <paramref name="slidingSlots"/> slots (0 without such layers), as (field, message), or null.
    /// </summary>
    public (string Field, string Message)? Validate(int slidingSlots)
    {
        if (!PolicyNames.Contains(Policy))
        {
            return ("policy", $"Unknown KV policy '{Policy}'; expected one of {string.Join(", ", PolicyNames)}.");
        }

        if (Beta < 1 || Beta > MaxTokens)
        {
            return ("beta", $"The compression interval must be 1 to {MaxTokens} tokens, got {Beta}.");
        }

        if (Budget < Math.Max(slidingSlots, 1))
        {
            return ("budget", slidingSlots > 0
                ? $"The KV budget must be at least {slidingSlots} tokens for this model: its sliding-window layers read the last {slidingSlots} tokens' slots of the global cache. Got {Budget}."
                : $"The KV budget must be at least 1 token, got {Budget}.");
        }

        if (Budget > MaxTokens)
        {
            return ("budget", $"The KV budget must be at most {MaxTokens} tokens, got {Budget}.");
        }

        if (ProtectRecent < 0 || ProtectRecent >= Budget)
        {
            return ("protect_recent", $"The protected recent tokens ({ProtectRecent}) must be at least 0 and fewer than the budget ({Budget}).");
        }

        return null;
    }
}
