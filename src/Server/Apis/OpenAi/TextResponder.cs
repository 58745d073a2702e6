using Serving.Runtime.Generation;
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

    public Task<IResult> StreamAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan) =>
        endpoint.StreamAsync(context, streams, plan,
            (index, cancellation) => echo is null ? Task.CompletedTask
                : Write(context.Response, new TextChoice(index, echo[index / plan.NumChoices], null, null), cancellation),
            (index, e, cancellation) => WriteEvent(context.Response, index, e, cancellation),
            (usage, cancellation) => ServerSentEvents.WriteAsync(context.Response,
                new TextCompletion(_id, "text_completion", _created, model, [], usage), endpoint.Json, cancellation));

    /// <summary>A choice with the event's text, logprobs or finish reason; nothing when it has none of them.</summary>
    private Task WriteEvent(HttpResponse response, int index, GenerationEvent e, CancellationToken cancellation)
    {
        if (e.Text.Length == 0 && e.Finish is null && !(logprobs && e.HasToken))
        {
            return Task.CompletedTask;
        }

        TextLogprobs? tokenLogprobs = null;
        if (logprobs && e.HasToken)
        {
            var single = new ChoiceResult(index);
            single.Add(e);
            tokenLogprobs = Logprobs(single, 0);
        }

        string? finish = e.Finish is null ? null : GenerationEndpoint.FinishName(e.Finish);
        return Write(response, new TextChoice(index, e.Text, tokenLogprobs, finish), cancellation);
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
