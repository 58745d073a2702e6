using System.Text.Json.Serialization;

namespace Serving.Server.Apis.OpenAi;

// Response bodies, in OpenAI's shapes (REFERENCE §4). Null fields are written as null, as
// OpenAI does (`"logprobs": null`, `"finish_reason": null` while streaming).

public sealed record Usage(
    int PromptTokens,
    int CompletionTokens,
    int TotalTokens,
    PromptTokensDetails PromptTokensDetails);

public sealed record PromptTokensDetails(int CachedTokens);

public sealed record ChatCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChoice> Choices, Usage Usage);

public sealed record ChatChoice(int Index, ChatMessageOut Message, ChatLogprobs? Logprobs, string FinishReason);

/// <summary>An assistant message: its text, or (content null) the functions it calls.</summary>
public sealed record ChatMessageOut(string Role, string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallOut>? ToolCalls = null);

public sealed record ToolCallOut(string Id, string Type, ToolCallFunction Function);

public sealed record ToolCallFunction(string Name, string Arguments);

/// <summary>A streamed call: OpenAI's delta shape (index, then id, type, name and arguments).</summary>
public sealed record ToolCallDelta(int Index, string Id, string Type, ToolCallFunction Function);

public sealed record ChatCompletionChunk(string Id, string Object, long Created, string Model, IReadOnlyList<ChatChunkChoice> Choices, Usage? Usage);

public sealed record ChatChunkChoice(int Index, ChatDelta Delta, ChatLogprobs? Logprobs, string? FinishReason);

public sealed record ChatDelta(
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Role,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? Content,
    [property: JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] IReadOnlyList<ToolCallDelta>? ToolCalls = null);

public sealed record ChatLogprobs(IReadOnlyList<ChatTokenLogprob> Content);

public sealed record ChatTokenLogprob(string Token, float Logprob, int[] Bytes, IReadOnlyList<ChatTopLogprob> TopLogprobs);

public sealed record ChatTopLogprob(string Token, float Logprob, int[] Bytes);

public sealed record TextCompletion(string Id, string Object, long Created, string Model, IReadOnlyList<TextChoice> Choices, Usage? Usage);

public sealed record TextChoice(int Index, string Text, TextLogprobs? Logprobs, string? FinishReason);

public sealed record TextLogprobs(
    IReadOnlyList<string> Tokens,
    IReadOnlyList<float> TokenLogprobs,
    IReadOnlyList<Dictionary<string, float>> TopLogprobs,
    IReadOnlyList<int> TextOffset);

public sealed record ModelList(string Object, IReadOnlyList<ModelCard> Data);

/// <summary>One model of <c>/v1/models</c>; <c>device</c> (ours, beside OpenAI's fields) is where it runs: <c>cpu</c> or <c>cuda:N</c>.</summary>
public sealed record ModelCard(string Id, string Object, long Created, string OwnedBy, int? MaxModelLen, string? Device);

public sealed record TokenizeResponse(IReadOnlyList<int> Tokens, int Count, int MaxModelLen);

public sealed record DetokenizeResponse(string Prompt);
