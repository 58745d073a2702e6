using System.Text;
using System.Text.Json;
using Serving.Runtime.Generation;
using Serving.Runtime.Telemetry;
using Serving.Runtime.Text;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Http;

namespace Serving.Server.Apis;

/// <summary><c>POST /v1/chat/completions</c>: OpenAI's chat API over the model's chat template.</summary>
public static class ChatApi
{
    public static IEndpointRouteBuilder MapChatApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/chat/completions", CreateChatCompletion).WithTags("OpenAI")
            .Produces<ChatCompletion>(contentType: "application/json")
            .Produces<ChatCompletionChunk>(contentType: "text/event-stream")
            .ProducesOpenAiErrors(400, 404, 413, 415, 429, 503)
            .AddEndpointFilter(new GenAiTelemetryFilter("chat"));
        return app;
    }

    private static async Task<IResult> CreateChatCompletion(ChatCompletionRequest body, GenerationEndpoint endpoint, HttpContext context)
    {
        var (engine, error) = endpoint.FindEngine(body.Model);
        if (engine is null)
        {
            return error!;
        }

        if (ReadMessages(body.Messages) is not { } messages)
        {
            return OpenAiErrors.InvalidParameter("messages",
                "messages must be a non-empty array of {role: system|user|assistant|tool, content: string or text parts} (assistant turns may carry tool_calls; tool turns a tool_call_id).");
        }

        var (tools, toolsParam, toolsError) = ToolCalling.Read(body.Tools, body.ToolChoice, body.ParallelToolCalls);
        if (toolsError is not null)
        {
            return OpenAiErrors.InvalidParameter(toolsParam!, toolsError);
        }

        if (tools is { Mode: not ToolMode.None } && ResponseFormats.Read(body.ResponseFormat).Schema is not null)
        {
            return OpenAiErrors.InvalidParameter("response_format", "response_format json_object or json_schema cannot be combined with tools (a call is already JSON); use tool_choice none.");
        }

        if (tools is not null)
        {
            messages = WithToolPrompt(messages, tools.Prompt());
        }

        if (body.TopLogprobs is not null && body.Logprobs != true)
        {
            return OpenAiErrors.InvalidParameter("top_logprobs", "top_logprobs needs logprobs set to true.");
        }

        if (body.TopLogprobs is < 0 or > 20)
        {
            return OpenAiErrors.InvalidParameter("top_logprobs", "top_logprobs must be between 0 and 20.");
        }

        string rendered;
        try
        {
            rendered = ChatTemplate.Render(messages, addGenerationPrompt: true);
        }
        catch (ArgumentException e)
        {
            return OpenAiErrors.InvalidParameter("messages", e.Message);
        }

        var (encoded, tooLong) = GenerationEndpoint.Encode(engine, rendered, "messages", addSpecialTokens: false);
        if (encoded is not { } prompt)
        {
            return tooLong!;
        }

        int? topLogprobs = body.Logprobs == true ? body.TopLogprobs ?? 0 : null;
        var (plan, streams, rejected) = GenerationEndpoint.Start(engine, body, [prompt], body.MaxCompletionTokens ?? body.MaxTokens, topLogprobs,
            tools?.Schema, optionalSchema: tools?.Mode == ToolMode.Auto);
        if (plan is null)
        {
            return rejected!;
        }

        context.Features.Get<GenAiOperation>()?.Submitted(prompt.Length, plan.NumChoices, plan.Requests[0].MaxTokens, body.Temperature, body.TopP);
        var chat = new ChatResponder(endpoint, engine.Model.Tokenizer, body.Model!, body.Logprobs == true, tools is { Mode: not ToolMode.None });
        return plan.Stream
            ? await chat.StreamAsync(context, streams!, plan)
            : await chat.CompleteAsync(context, streams!, plan);
    }

    /// <summary>
    /// The messages as template input, or null when any is malformed. An assistant turn's tool
    /// calls become the call object the model writes; consecutive <c>tool</c> results become one
    /// user turn (<see cref="ToolCalling"/>), so turns still alternate as Gemma's template wants.
    /// </summary>
    private static List<ChatMessage>? ReadMessages(List<ChatMessageDto?>? messages)
    {
        if (messages is not { Count: > 0 })
        {
            return null;
        }

        var result = new List<ChatMessage>(messages.Count);
        var toolResults = new List<string>();
        foreach (ChatMessageDto? message in messages)
        {
            if (message is null)
            {
                return null;
            }

            // OpenAI's newer "developer" role plays the system role for models that know no other.
            string? role = message.Role == "developer" ? "system" : message.Role;
            if (role == "tool")
            {
                if (ReadContent(message.Content) is not { } output || message.ToolCallId is null)
                {
                    return null;
                }

                toolResults.Add(output);
                continue;
            }

            if (toolResults.Count > 0)
            {
                result.Add(new ChatMessage("user", ToolCalling.RenderResults(toolResults)));
                toolResults.Clear();
            }

            if (role == "assistant" && message.ToolCalls is { Count: > 0 } calls)
            {
                if (calls.Any(call => call.Function?.Name is null || call.Function.Arguments is null))
                {
                    return null;
                }

                result.Add(new ChatMessage("assistant", ToolCalling.RenderCalls(calls.Select(call => (call.Function!.Name!, call.Function.Arguments!)))));
                continue;
            }

            if (role is not ("system" or "user" or "assistant") || ReadContent(message.Content) is not { } content)
            {
                return null;
            }

            result.Add(new ChatMessage(role, content));
        }

        if (toolResults.Count > 0)
        {
            result.Add(new ChatMessage("user", ToolCalling.RenderResults(toolResults)));
        }

        return result;
    }

    /// <summary>The tool instructions in front of the first user turn (through the system slot, as Gemma's template places a system prompt).</summary>
    private static List<ChatMessage> WithToolPrompt(List<ChatMessage> messages, string prompt) =>
        messages[0].Role == "system"
            ? [new ChatMessage("system", prompt + "\n\n" + messages[0].Content), .. messages.Skip(1)]
            : [new ChatMessage("system", prompt), .. messages];

    private static string? ReadContent(JsonElement? content)
    {
        if (content is { ValueKind: JsonValueKind.String } text)
        {
            return text.GetString();
        }

        if (content is not { ValueKind: JsonValueKind.Array } parts)
        {
            return null;
        }

        var joined = new StringBuilder();
        foreach (JsonElement part in parts.EnumerateArray())
        {
            if (!IsText(part) || !part.TryGetProperty("text", out JsonElement partText) || partText.ValueKind != JsonValueKind.String)
            {
                return null;
            }

            joined.Append(partText.GetString());
        }

        return joined.ToString();
    }

    /// <summary>An object whose <c>type</c> is the string "text" (a content part, a response format); any other JSON is not.</summary>
    private static bool IsText(JsonElement element) =>
        element.ValueKind == JsonValueKind.Object && element.TryGetProperty("type", out JsonElement type)
        && type.ValueKind == JsonValueKind.String && type.ValueEquals("text");
}
