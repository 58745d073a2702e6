using System.Text.Json;
using Serving.Runtime.Generation;
using Serving.Runtime.Telemetry;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Http;

namespace Serving.Server.Apis;

/// <summary><c>POST /v1/completions</c>: OpenAI's (legacy) text completions, prompts as text or token ids.</summary>
public static class CompletionsApi
{
    public static IEndpointRouteBuilder MapCompletionsApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/completions", CreateCompletion).WithTags("OpenAI")
            .Produces<TextCompletion>(contentType: "application/json")
            .Produces<TextCompletion>(contentType: "text/event-stream")
            .ProducesOpenAiErrors(400, 404, 413, 415, 429, 503)
            .AddEndpointFilter(new GenAiTelemetryFilter("text_completion"));
        return app;
    }

    private static async Task<IResult> CreateCompletion(CompletionRequest body, GenerationEndpoint endpoint, HttpContext context)
    {
        var (engine, error) = endpoint.FindEngine(body.Model);
        if (engine is null)
        {
            return error!;
        }

        var (read, tooLong) = ReadPrompts(body.Prompt, engine);
        if (tooLong is not null)
        {
            return tooLong;
        }

        if (read is not { } prompts)
        {
            return OpenAiErrors.InvalidParameter("prompt",
                "prompt must be a non-empty string, an array of strings, an array of token ids, or an array of token-id arrays.");
        }

        if (body.Logprobs is < 0 or > 20)
        {
            return OpenAiErrors.InvalidParameter("logprobs", "logprobs must be between 0 and 20.");
        }

        var (plan, streams, rejected) = GenerationEndpoint.Start(engine, body, prompts, body.MaxTokens, body.Logprobs);
        if (plan is null)
        {
            return rejected!;
        }

        context.Features.Get<GenAiOperation>()?.Submitted(prompts.Sum(ids => ids.Length), plan.NumChoices, plan.Requests[0].MaxTokens, body.Temperature, body.TopP);
        var echo = body.Echo == true ? prompts.Select(prompt => engine.Model.Tokenizer.Decode(prompt, skipSpecialTokens: true)).ToArray() : null;
        var responder = new TextResponder(endpoint, engine.Model.Tokenizer, body.Model!, body.Logprobs is not null, echo);
        return plan.Stream
            ? await responder.StreamAsync(context, streams!, plan)
            : await responder.CompleteAsync(context, streams!, plan);
    }

    /// <summary>The prompts as token ids (text gets the tokenizer's BOS); null when malformed, or the error of a text too long to encode.</summary>
    private static (List<int[]>? Prompts, IResult? Error) ReadPrompts(JsonElement? prompt, Engine engine)
    {
        switch (prompt)
        {
            case { ValueKind: JsonValueKind.String } text when text.GetString() is { Length: > 0 } value:
                var (ids, error) = GenerationEndpoint.Encode(engine, value, "prompt");
                return (ids is null ? null : [ids], error);
            case { ValueKind: JsonValueKind.Array } array when array.GetArrayLength() > 0:
                if (array[0].ValueKind == JsonValueKind.Number)
                {
                    return (ReadIds(array) is { } tokens ? [tokens] : null, null);
                }

                var prompts = new List<int[]>();
                foreach (JsonElement item in array.EnumerateArray())
                {
                    var (itemIds, itemError) = item.ValueKind switch
                    {
                        JsonValueKind.String when item.GetString() is { Length: > 0 } value => GenerationEndpoint.Encode(engine, value, "prompt"),
                        JsonValueKind.Array when item.GetArrayLength() > 0 => (ReadIds(item), null),
                        _ => (null, null),
                    };
                    if (itemIds is null)
                    {
                        return (null, itemError);
                    }

                    prompts.Add(itemIds);
                }

                return (prompts, null);
            default:
                return (null, null);
        }
    }

    private static int[]? ReadIds(JsonElement array)
    {
        var ids = new int[array.GetArrayLength()];
        int i = 0;
        foreach (JsonElement item in array.EnumerateArray())
        {
            if (item.ValueKind != JsonValueKind.Number || !item.TryGetInt32(out ids[i++]))
            {
                return null;
            }
        }

        return ids;
    }
}
