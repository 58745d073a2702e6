using System.Text;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Text;
using Serving.Server.Http;

namespace Serving.Server.Apis.OpenAi;

/// <summary>
/// Writes a chat completion, whole or as <c>chat.completion.chunk</c> events. With tools, a reply
/// that is a call object becomes <c>message.tool_calls</c> and <c>finish_reason: "tool_calls"</c>;
/// streamed, a reply that starts with <c>{</c> is held back and sent as one tool-call delta per
/// call when it completes (a cut-off call is sent as the text it is, with <c>length</c>).
/// </summary>
public sealed class ChatResponder(GenerationEndpoint endpoint, GemmaTokenizer tokenizer, string model, bool logprobs, bool tools = false)
{
    /// <summary>Per choice being streamed with tools: the text held back while it may be a call (null: streaming as text).</summary>
    private readonly Dictionary<int, StringBuilder?> _held = [];

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
            string text = result.Text.ToString();
            string finish = GenerationEndpoint.FinishName(result.Finish);
            List<ToolCallOut>? calls = tools && finish == "stop" ? ToolCalling.ParseCalls(text) : null;
            choices[i] = new ChatChoice(i, calls is null ? new ChatMessageOut("assistant", text) : new ChatMessageOut("assistant", null, calls),
                logprobs ? new ChatLogprobs(result.Tokens.ConvertAll(token => Logprob(token.TokenId, token.Logprob, token.Top))) : null,
                calls is null ? finish : "tool_calls");
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
        if (tools && Hold(index, e.Text, finish) is { } held)
        {
            return held.Done ? WriteHeld(response, index, held.Text, finish!, chunkLogprobs, cancellation) : Task.CompletedTask;
        }

        return Write(response, new ChatChunkChoice(index, new ChatDelta(null, e.Text.Length > 0 ? e.Text : null), chunkLogprobs, finish), cancellation);
    }

    /// <summary>Whether this choice's text is being held as a possible call; the text so far and whether the choice ended.</summary>
    private (string Text, bool Done)? Hold(int index, string text, string? finish)
    {
        if (!_held.TryGetValue(index, out StringBuilder? held))
        {
            if (text.Length == 0 && finish is null)
            {
                return (string.Empty, false);
            }

            // The first text decides: a call starts with '{' (the constraint makes sure of it).
            held = text.StartsWith('{') ? new StringBuilder() : null;
            _held[index] = held;
        }

        if (held is null)
        {
            return null;
        }

        held.Append(text);
        return (held.ToString(), finish is not null);
    }

    /// <summary>A held reply at its end: its calls as tool-call deltas and <c>tool_calls</c>, or its text as it is.</summary>
    private async Task WriteHeld(HttpResponse response, int index, string text, string finish, ChatLogprobs? chunkLogprobs, CancellationToken cancellation)
    {
        if (finish == "stop" && ToolCalling.ParseCalls(text) is { } calls)
        {
            ToolCallDelta[] deltas = [.. calls.Select((call, i) => new ToolCallDelta(i, call.Id, call.Type, call.Function))];
            await Write(response, new ChatChunkChoice(index, new ChatDelta(null, null, deltas), chunkLogprobs, null), cancellation);
            await Write(response, new ChatChunkChoice(index, new ChatDelta(null, null), null, "tool_calls"), cancellation);
            return;
        }

        await Write(response, new ChatChunkChoice(index, new ChatDelta(null, text.Length > 0 ? text : null), chunkLogprobs, finish), cancellation);
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
