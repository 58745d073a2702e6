using System.Text.Json;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Server.Http;

namespace Serving.Server.Apis.OpenAi;

/// <summary>
/// A validated request turned into engine requests: one per (prompt, choice), choice
/// <c>i</c> of prompt <c>p</c> at index <c>p × n + i</c>. Building it is where every sampling
/// field is checked; the first invalid one becomes a 400 naming it.
/// </summary>
public sealed record GenerationPlan(IReadOnlyList<GenerationRequest> Requests, int NumChoices, bool Stream, bool IncludeUsage)
{
    /// <summary>OpenAI allows at most 4 stop strings.</summary>
    private const int MaxStopStrings = 4;

    /// <summary>Without max_tokens a request may use the rest of the context, but reserves KV for at most this many tokens.</summary>
    public const int DefaultMaxTokens = 4096;

    private const int MaxChoices = 16;

    /// <param name="toolSchema">A tool call's schema (chat with tools), which takes response_format's place.</param>
    /// <param name="optionalSchema">The reply may be free text instead (tool_choice auto).</param>
    public static (GenerationPlan? Plan, IResult? Error) Build(SamplingRequest body, IReadOnlyList<int[]> prompts, Engine engine,
        int? maxTokens, int? topLogprobs, Serving.Runtime.Generation.Structured.SchemaNode? toolSchema = null, bool optionalSchema = false)
    {
        if (Check(body, maxTokens) is { } invalid)
        {
            return (null, invalid);
        }

        int vocabSize = engine.Model.Tokenizer.VocabSize;
        int outside = body.StopTokenIds?.FindIndex(id => id < 0 || id >= vocabSize) ?? -1;
        if (outside >= 0)
        {
            return (null, OpenAiErrors.InvalidParameter("stop_token_ids",
                $"stop_token_ids[{outside}] = {body.StopTokenIds![outside]} is outside the vocabulary (0 to {vocabSize - 1})."));
        }

        if (ReadStop(body.Stop) is not { } stops)
        {
            return (null, OpenAiErrors.InvalidParameter("stop", $"stop must be a string or an array of at most {MaxStopStrings} non-empty strings."));
        }

        var (formatSchema, formatError) = ResponseFormats.Read(body.ResponseFormat);
        var schema = toolSchema ?? formatSchema;
        if (formatError is not null)
        {
            return (null, OpenAiErrors.InvalidParameter("response_format", formatError));
        }

        int n = body.N ?? 1;
        long baseSeed = body.Seed ?? Random.Shared.NextInt64();
        var requests = new List<GenerationRequest>(prompts.Count * n);
        foreach (int[] prompt in prompts)
        {
            for (int i = 0; i < n; i++)
            {
                var request = new GenerationRequest
                {
                    PromptIds = prompt,
                    MaxTokens = maxTokens ?? Math.Max(1, Math.Min(DefaultMaxTokens, engine.ContextLength - prompt.Length)),
                    Sampling = Sampling(body, topLogprobs, body.Seed is { } seed ? seed + i : null),
                    StopStrings = stops,
                    StopTokenIds = body.StopTokenIds ?? [],
                    IgnoreEos = body.IgnoreEos ?? false,
                    DefaultSeed = baseSeed + i,
                    KvPolicy = body.KvPolicy,
                    KvBudget = body.KvBudget,
                    ResponseSchema = schema,
                    ResponseSchemaIsOptional = toolSchema is not null && optionalSchema,
                };
                if (engine.Validate(request) is { } error)
                {
                    return (null, OpenAiErrors.InvalidParameter(error.Param, error.Message));
                }

                requests.Add(request);
            }
        }

        return (new GenerationPlan(requests, n, body.Stream ?? false, body.StreamOptions?.IncludeUsage ?? false), null);
    }

    private static IResult? Check(SamplingRequest body, int? maxTokens)
    {
        if (body.N is < 1 or > MaxChoices)
        {
            return OpenAiErrors.InvalidParameter("n", $"n must be between 1 and {MaxChoices}.");
        }

        if (maxTokens is < 1)
        {
            return OpenAiErrors.InvalidParameter("max_tokens", "max_tokens must be at least 1.");
        }

        if (body.Temperature is < 0 or > 2 || body.Temperature is double.NaN)
        {
            return OpenAiErrors.InvalidParameter("temperature", "temperature must be between 0 and 2.");
        }

        if (body.StreamOptions is not null && body.Stream != true)
        {
            return OpenAiErrors.InvalidParameter("stream_options", "stream_options is only allowed when stream is true.");
        }

        return null;
    }

    private static SamplingParams Sampling(SamplingRequest body, int? topLogprobs, long? seed) => new()
    {
        Temperature = body.Temperature ?? 1.0,
        TopP = body.TopP ?? 1.0,
        TopK = body.TopK ?? 0,
        MinP = body.MinP ?? 0,
        Seed = seed,
        PresencePenalty = body.PresencePenalty ?? 0,
        FrequencyPenalty = body.FrequencyPenalty ?? 0,
        RepetitionPenalty = body.RepetitionPenalty ?? 1.0,
        TopLogprobs = topLogprobs,
    };

    /// <summary>The stop strings, or null when the field is malformed.</summary>
    private static string[]? ReadStop(JsonElement? stop)
    {
        switch (stop)
        {
            case null:
            case { ValueKind: JsonValueKind.Null }:
                return [];
            case { ValueKind: JsonValueKind.String } single:
                return single.GetString() is { Length: > 0 } text ? [text] : null;
            case { ValueKind: JsonValueKind.Array } array when array.GetArrayLength() <= MaxStopStrings:
                var stops = new List<string>();
                foreach (JsonElement item in array.EnumerateArray())
                {
                    if (item.ValueKind != JsonValueKind.String || item.GetString() is not { Length: > 0 } itemText)
                    {
                        return null;
                    }

                    stops.Add(itemText);
                }

                return [.. stops];
            default:
                return null;
        }
    }
}
