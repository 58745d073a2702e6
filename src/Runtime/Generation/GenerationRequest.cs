using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Generation;

/// <summary>
/// One sequence to generate: the prompt's token ids, how to sample, and when to stop.
/// Immutable; the engine validates it at submission.
/// </summary>
public sealed record GenerationRequest
{
    public required IReadOnlyList<int> PromptIds { get; init; }

    public required int MaxTokens { get; init; }

    public SamplingParams Sampling { get; init; } = SamplingParams.Greedy;

    /// <summary>Extra ids that end generation, besides the model's EOS ids.</summary>
    public IReadOnlyList<int> StopTokenIds { get; init; } = [];

    /// <summary>Strings that end generation; the text before them is the output.</summary>
    public IReadOnlyList<string> StopStrings { get; init; } = [];

    /// <summary>Keep generating past EOS (benchmarks).</summary>
    public bool IgnoreEos { get; init; }

    /// <summary>Whether special tokens' text (e.g. &lt;end_of_turn&gt;) is left out of the output text.</summary>
    public bool SkipSpecialTokens { get; init; } = true;

    /// <summary>The seed when <see cref="SamplingParams.Seed"/> is unset (per choice, so n choices differ).</summary>
    public long DefaultSeed { get; init; }

    /// <summary>The KV eviction policy for this sequence (null: the engine's default), as vLLM takes extra sampling fields.</summary>
    public string? KvPolicy { get; init; }

    /// <summary>Tokens each compressed layer keeps (null: the engine's default budget).</summary>
    public int? KvBudget { get; init; }

    /// <summary>
    /// Constrains the output to compact JSON matching this compiled schema (response_format, tool
    /// calls): each step samples only among the tokens that keep it valid, and end of sequence
    /// only once the value is complete. Null: free text.
    /// </summary>
    public Structured.SchemaNode? ResponseSchema { get; init; }

    /// <summary>
    /// The output may instead be free text (tool_choice auto): the first token decides, JSON if it
    /// begins with <c>{</c> (constrained from there on), free text otherwise.
    /// </summary>
    public bool ResponseSchemaIsOptional { get; init; }
}

/// <summary>Why a sequence ended, as OpenAI names it (plus <c>cancelled</c> and <c>error</c>, which are never sent as such).</summary>
public enum FinishReason
{
    Stop,
    Length,
    Cancelled,
    Error,
}

/// <summary>
/// Token counts of a finished sequence; <see cref="CachedTokens"/> came from the prefix cache,
/// <see cref="KvTokensPeak"/> is the most tokens a global layer's cache held (fewer than the
/// sequence's length once KV compression evicts).
/// </summary>
public readonly record struct GenerationUsage(int PromptTokens, int CompletionTokens, int CachedTokens, int KvTokensPeak = 0, int EvictedTokens = 0);

/// <summary>
/// One event of a sequence's stream: a token with the text it completed (possibly empty while
/// a stop string or a multi-byte character is pending), and, on the last event, the finish
/// reason and usage. Text before a stop string is flushed as a final event with no token.
/// </summary>
public readonly record struct GenerationEvent(
    int TokenId,
    string Text,
    float Logprob,
    TokenLogprob[]? TopLogprobs,
    FinishReason? Finish,
    GenerationUsage Usage,
    string? Error = null)
{
    public const int NoToken = -1;

    public bool HasToken => TokenId != NoToken;
}
