using System.Text.Json;
using System.Text.Json.Serialization;

namespace Serving.Server.Apis.OpenAi;

// Request bodies of /v1/chat/completions and /v1/completions, named as OpenAI names them
// (snake_case on the wire). Every field is optional here; the handlers validate and name
// the offending field in the error's `param`. Unknown fields are ignored, as OpenAI does.

/// <summary>The sampling and stopping fields both endpoints share (OpenAI's, plus vLLM's extras).</summary>
public abstract class SamplingRequest
{
    public string? Model { get; set; }
    public int? MaxTokens { get; set; }
    public double? Temperature { get; set; }
    public double? TopP { get; set; }

    /// <summary>vLLM extension: keep the k most likely tokens; 0 or -1 keeps all.</summary>
    public int? TopK { get; set; }

    /// <summary>vLLM extension: drop tokens below min_p × the top probability.</summary>
    public double? MinP { get; set; }

    public long? Seed { get; set; }
    public int? N { get; set; }
    public bool? Stream { get; set; }
    public StreamOptions? StreamOptions { get; set; }

    /// <summary>A string or up to 4 strings.</summary>
    public JsonElement? Stop { get; set; }

    public double? PresencePenalty { get; set; }
    public double? FrequencyPenalty { get; set; }

    /// <summary>vLLM extension: HF-style repetition penalty over prompt and output (1 = off).</summary>
    public double? RepetitionPenalty { get; set; }

    /// <summary>vLLM extension: generate past EOS.</summary>
    public bool? IgnoreEos { get; set; }

    /// <summary>vLLM extension: extra ids that end generation.</summary>
    public List<int>? StopTokenIds { get; set; }

    public string? User { get; set; }

    /// <summary>Serving extension: the KV-cache eviction policy (none, triattention, window, knorm); the server's default when absent.</summary>
    public string? KvPolicy { get; set; }

    /// <summary>Serving extension: tokens each global layer's cache keeps after a compression.</summary>
    public int? KvBudget { get; set; }

    /// <summary>
    /// <c>{"type": "text"}</c>, <c>{"type": "json_object"}</c> or <c>{"type": "json_schema", "json_schema": {"name", "schema", "strict"}}</c>:
    /// the output is constrained to (compact) JSON, of that schema for json_schema (<see cref="ResponseFormats"/>).
    /// </summary>
    public JsonElement? ResponseFormat { get; set; }
}

public sealed class StreamOptions
{
    public bool? IncludeUsage { get; set; }
}

public sealed class ChatCompletionRequest : SamplingRequest
{
    /// <summary>An entry may be JSON null; the handler refuses it (400 naming messages).</summary>
    public List<ChatMessageDto?>? Messages { get; set; }

    /// <summary>OpenAI's newer name for max_tokens; wins when both are sent.</summary>
    public int? MaxCompletionTokens { get; set; }

    public bool? Logprobs { get; set; }
    public int? TopLogprobs { get; set; }

    /// <summary>Functions the model may call: <c>[{type: "function", function: {name, description, parameters}}]</c> (<see cref="ToolCalling"/>).</summary>
    public JsonElement? Tools { get; set; }

    /// <summary><c>none</c>, <c>auto</c> (the default with tools), <c>required</c>, or <c>{type: "function", function: {name}}</c>.</summary>
    public JsonElement? ToolChoice { get; set; }

    /// <summary>Whether one reply may call several functions (default true).</summary>
    public bool? ParallelToolCalls { get; set; }
}

public sealed class ChatMessageDto
{
    public string? Role { get; set; }

    /// <summary>A string, or an array of content parts of which the <c>text</c> ones are read.</summary>
    public JsonElement? Content { get; set; }

    public string? Name { get; set; }

    /// <summary>An assistant turn's calls: <c>[{id, type: "function", function: {name, arguments}}]</c>.</summary>
    public List<ToolCallDto>? ToolCalls { get; set; }

    /// <summary>A <c>tool</c> turn: the call it answers.</summary>
    public string? ToolCallId { get; set; }
}

public sealed class ToolCallDto
{
    public string? Id { get; set; }
    public string? Type { get; set; }
    public ToolCallFunctionDto? Function { get; set; }
}

public sealed class ToolCallFunctionDto
{
    public string? Name { get; set; }
    public string? Arguments { get; set; }
}

public sealed class CompletionRequest : SamplingRequest
{
    /// <summary>A string, an array of strings, an array of token ids, or an array of such arrays.</summary>
    public JsonElement? Prompt { get; set; }

    /// <summary>How many top alternatives to return per token (0 to 20); null returns none.</summary>
    public int? Logprobs { get; set; }

    /// <summary>Put the prompt before the completion in <c>text</c>.</summary>
    public bool? Echo { get; set; }
}

public sealed class TokenizeRequest
{
    public string? Model { get; set; }
    public string? Prompt { get; set; }
    public List<ChatMessageDto?>? Messages { get; set; }
    public bool? AddSpecialTokens { get; set; }
}

public sealed class DetokenizeRequest
{
    public string? Model { get; set; }
    public List<int>? Tokens { get; set; }
}

/// <summary>
/// Source-generated metadata for these bodies, first in the server's resolver chain (ServingHostExtensions), with the
/// server's settings: snake_case, numbers never read from strings, a key twice refused.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower, NumberHandling = JsonNumberHandling.Strict,
    AllowDuplicateProperties = false)]
[JsonSerializable(typeof(ChatCompletionRequest))]
[JsonSerializable(typeof(CompletionRequest))]
[JsonSerializable(typeof(TokenizeRequest))]
[JsonSerializable(typeof(DetokenizeRequest))]
public sealed partial class OpenAiJson : JsonSerializerContext;
