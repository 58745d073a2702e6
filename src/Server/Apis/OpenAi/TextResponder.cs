using Serving.Runtime.Generation;
using Serving.Runtime.Telemetry;
using Serving.Runtime.Text;
using Serving.Server.Http;

namespace Serving.Server.Apis.OpenAi;

/// <summary>Writes a text completion, whole or as <c>text_completion</c> events.</summary>
public sealed class TextResponder(GenerationEndpoint endpoint, GemmaTokenizer tokenizer, string model, bool logprobs, string[]? echo)
{
    private readonly string _id = GenerationEndpoint.NewId("cmpl-");
    private readonly long _created = GenerationEndpoint.Now();

    public async Task<IResult> CompleteAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan)
    {
        var (results, error) = await endpoint.CollectAsync(context, streams);
        if (results is null)
        {
            return error!;
        }

        var choices = new TextChoice[results.Length];
        for (int i = 0; i < results.Length; i++)
        {
            string prefix = echo?[i / plan.NumChoices] ?? "";
            choices[i] = new TextChoice(i, prefix + results[i].Text, logprobs ? Logprobs(results[i], prefix.Length) : null,
                GenerationEndpoint.FinishName(results[i].Finish));
        }

        return TypedResults.Json(new TextCompletion(_id, "text_completion", _created, model, choices, GenerationEndpoint.UsageOf(results, plan.NumChoices)),
            endpoint.Json);
    }

    public async Task<IResult> StreamAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan)
    {
        using StreamGuard guard = endpoint.Guard(context, streams);
        HttpResponse response = context.Response;
        ServerSentEvents.Start(response);
        GenAiOperation? genAi = context.Features.Get<GenAiOperation>();
        var results = new ChoiceResult[streams.Count];
        for (int i = 0; i < results.Length; i++)
        {
            results[i] = new ChoiceResult(i);
            if (echo is not null)
            {
                await Write(response, new TextChoice(i, echo[i / plan.NumChoices], null, null), context.RequestAborted);
            }
        }

        await foreach (var (index, e) in ChoiceCollector.Merge(streams, CancellationToken.None))
        {
            genAi?.OnEvent(e);
            results[index].Add(e);
            if (e.Finish == FinishReason.Error)
            {
                await ServerSentEvents.WriteAsync(response, OpenAiErrors.Body(500, $"Generation failed: {e.Error}", null, "engine_error"), endpoint.Json, context.RequestAborted);
            }
            else if (e.Finish != FinishReason.Cancelled && (e.Text.Length > 0 || e.Finish is not null || (logprobs && e.HasToken)))
            {
                var single = new ChoiceResult(index);
                single.Add(e);
                string? finish = e.Finish is null ? null : GenerationEndpoint.FinishName(e.Finish);
                await Write(response, new TextChoice(index, e.Text, logprobs && e.HasToken ? Logprobs(single, 0) : null, finish), context.RequestAborted);
            }
        }

        if (guard.IsExpired)
        {
            genAi?.Fail(context.RequestAborted.IsCancellationRequested ? "cancelled" : "timeout");
            await endpoint.WriteTimeoutAsync(response, context.RequestAborted);
            return Results.Empty;
        }

        if (plan.IncludeUsage)
        {
            await ServerSentEvents.WriteAsync(response,
                new TextCompletion(_id, "text_completion", _created, model, [], GenerationEndpoint.UsageOf(results, plan.NumChoices)), endpoint.Json, context.RequestAborted);
        }

        await ServerSentEvents.WriteDoneAsync(response, context.RequestAborted);
        return Results.Empty;
    }

    private Task Write(HttpResponse response, TextChoice choice, CancellationToken cancellation) =>
        ServerSentEvents.WriteAsync(response, new TextCompletion(_id, "text_completion", _created, model, [choice], null), endpoint.Json, cancellation);

    /// <summary>OpenAI's legacy logprobs: parallel arrays of tokens, logprobs, top maps and text offsets.</summary>
    private TextLogprobs Logprobs(ChoiceResult result, int offset)
    {
        var tokens = new List<string>(result.Tokens.Count);
        var values = new List<float>(result.Tokens.Count);
        var tops = new List<Dictionary<string, float>>(result.Tokens.Count);
        var offsets = new List<int>(result.Tokens.Count);
        foreach (var (token, logprob, top) in result.Tokens)
        {
            string text = tokenizer.Decode([token]);
            offsets.Add(offset);
            offset += text.Length;
            tokens.Add(text);
            values.Add(logprob);
            var map = new Dictionary<string, float>();
            foreach (var alternative in top ?? [])
            {
                map.TryAdd(tokenizer.Decode([alternative.TokenId]), alternative.Logprob);
            }

            tops.Add(map);
        }

        return new TextLogprobs(tokens, values, tops, offsets);
    }
}
