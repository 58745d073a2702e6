using System.Text;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Text;
using Serving.Server.Http;

namespace Serving.Server.Apis.OpenAi;

/// <summary>Writes a chat completion, whole or as <c>chat.completion.chunk</c> events.</summary>
public sealed class ChatResponder(GenerationEndpoint endpoint, GemmaTokenizer tokenizer, string model, bool logprobs)
{
    private readonly string _id = GenerationEndpoint.NewId("chatcmpl-");
    private readonly long _created = GenerationEndpoint.Now();

    public async Task<IResult> CompleteAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan)
    {
        var (results, error) = await endpoint.CollectAsync(context, streams);
        if (results is null)
        {
            return error!;
        }

        var choices = new ChatChoice[results.Length];
        for (int i = 0; i < results.Length; i++)
        {
            ChoiceResult result = results[i];
            choices[i] = new ChatChoice(i, new ChatMessageOut("assistant", result.Text.ToString()),
                logprobs ? new ChatLogprobs(result.Tokens.ConvertAll(token => Logprob(token.TokenId, token.Logprob, token.Top))) : null,
                GenerationEndpoint.FinishName(result.Finish));
        }

        return TypedResults.Json(new ChatCompletion(_id, "chat.completion", _created, model, choices, GenerationEndpoint.UsageOf(results, plan.NumChoices)),
            endpoint.Json);
    }

    public Task<IResult> StreamAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan) =>
        endpoint.StreamAsync(context, streams, plan,
            (index, cancellation) => Write(context.Response, new ChatChunkChoice(index, new ChatDelta("assistant", ""), null, null), cancellation),
            (index, e, cancellation) => WriteEvent(context.Response, index, e, cancellation),
            (usage, cancellation) => ServerSentEvents.WriteAsync(context.Response,
                new ChatCompletionChunk(_id, "chat.completion.chunk", _created, model, [], usage), endpoint.Json, cancellation));

    /// <summary>A delta with the event's text, logprobs or finish reason; nothing when it has none of them.</summary>
    private Task WriteEvent(HttpResponse response, int index, GenerationEvent e, CancellationToken cancellation)
    {
        ChatLogprobs? chunkLogprobs = logprobs && e.HasToken ? new ChatLogprobs([Logprob(e.TokenId, e.Logprob, e.TopLogprobs)]) : null;
        if (e.Text.Length == 0 && chunkLogprobs is null && e.Finish is null)
        {
            return Task.CompletedTask;
        }

        string? finish = e.Finish is null ? null : GenerationEndpoint.FinishName(e.Finish);
        return Write(response, new ChatChunkChoice(index, new ChatDelta(null, e.Text.Length > 0 ? e.Text : null), chunkLogprobs, finish), cancellation);
    }

    private Task Write(HttpResponse response, ChatChunkChoice choice, CancellationToken cancellation) =>
        ServerSentEvents.WriteAsync(response, new ChatCompletionChunk(_id, "chat.completion.chunk", _created, model, [choice], null), endpoint.Json, cancellation);

    private ChatTokenLogprob Logprob(int token, float logprob, TokenLogprob[]? top)
    {
        var alternatives = new List<ChatTopLogprob>(top?.Length ?? 0);
        foreach (TokenLogprob alternative in top ?? [])
        {
            string text = tokenizer.Decode([alternative.TokenId]);
            alternatives.Add(new ChatTopLogprob(text, alternative.Logprob, Bytes(text)));
        }

        string tokenText = tokenizer.Decode([token]);
        return new ChatTokenLogprob(tokenText, logprob, Bytes(tokenText), alternatives);
    }

    private static int[] Bytes(string text) => Array.ConvertAll(Encoding.UTF8.GetBytes(text), b => (int)b);
}
