using System.ClientModel;
using OpenAI;
using OpenAI.Chat;

namespace Serving.Server.Tests.Apis;

/// <summary>The official OpenAI .NET SDK against the server, as users call it.</summary>
public class OpenAiSdkTests(ServingServer server) : IClassFixture<ServingServer>
{
    private ChatClient Chat() => new("tiny", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") });

    [Fact]
    public async Task ChatCompletionReturnsTextAndUsage()
    {
        ChatCompletion completion = await Chat().CompleteChatAsync([new UserChatMessage("Who made the earth?")],
            new ChatCompletionOptions { MaxOutputTokenCount = 12, Temperature = 0 });
        Assert.Equal(ChatMessageRole.Assistant, completion.Role);
        Assert.True(completion.Usage.OutputTokenCount is >= 1 and <= 12);
        Assert.True(completion.Usage.InputTokenCount > 0);
        Assert.Contains(completion.FinishReason, new[] { ChatFinishReason.Stop, ChatFinishReason.Length });
    }

    [Fact]
    public async Task StreamingGivesTheSameTextAsTheWholeResponse()
    {
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 16, Temperature = 0 };
        ChatMessage[] messages = [new SystemChatMessage("Be brief."), new UserChatMessage("In the beginning")];
        ChatCompletion whole = await Chat().CompleteChatAsync(messages, options);

        var text = new System.Text.StringBuilder();
        ChatTokenUsage? usage = null;
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in Chat().CompleteChatStreamingAsync(messages, options))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                text.Append(part.Text);
            }

            usage = update.Usage ?? usage;
            finish = update.FinishReason ?? finish;
        }

        Assert.Equal(whole.Content.Count > 0 ? whole.Content[0].Text : "", text.ToString());
        Assert.Equal(whole.Usage.OutputTokenCount, usage!.OutputTokenCount);
        Assert.Equal(whole.FinishReason, finish);
    }

    [Fact]
    public async Task AnUnknownModelIsAClientErrorTheSdkReports()
    {
        var client = new ChatClient("no-such-model", new ApiKeyCredential("unused"), new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") });
        var error = await Assert.ThrowsAsync<ClientResultException>(() => client.CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(404, error.Status);
    }

    /// <summary>The .NET SDK's JSON-schema response format: the reply deserializes and validates, streamed or not.</summary>
    [Fact]
    public async Task JsonSchemaResponseFormatGivesJsonOfTheSchema()
    {
        const string schema = """{"type":"object","properties":{"name":{"type":"string","maxLength":10},"ok":{"type":"boolean"},"kind":{"enum":["x","y"]}},"required":["name","ok","kind"],"additionalProperties":false}""";
        var options = new ChatCompletionOptions
        {
            MaxOutputTokenCount = 80,
            Temperature = 0,
            ResponseFormat = ChatResponseFormat.CreateJsonSchemaFormat("thing", BinaryData.FromString(schema), jsonSchemaIsStrict: true),
        };
        ChatMessage[] messages = [new UserChatMessage("A thing as JSON")];
        ChatCompletion whole = await Chat().CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.Stop, whole.FinishReason);
        string text = whole.Content[0].Text;
        using var document = System.Text.Json.JsonDocument.Parse(text);
        Assert.True(Json.Schema.JsonSchema.FromText(schema).Evaluate(document.RootElement).IsValid, text);

        var streamed = new System.Text.StringBuilder();
        await foreach (StreamingChatCompletionUpdate update in Chat().CompleteChatStreamingAsync(messages, options))
        {
            foreach (ChatMessageContentPart part in update.ContentUpdate)
            {
                streamed.Append(part.Text);
            }
        }

        Assert.Equal(text, streamed.ToString());
    }

    /// <summary>The .NET SDK's function tools with a required call: the call's arguments parse as its parameters, streamed or not.</summary>
    [Fact]
    public async Task ToolCallsRoundTripThroughTheSdk()
    {
        ChatTool weather = ChatTool.CreateFunctionTool("get_weather", "Weather in a city",
            BinaryData.FromString("""{"type":"object","properties":{"city":{"type":"string","maxLength":8},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}"""));
        var options = new ChatCompletionOptions { MaxOutputTokenCount = 120, Temperature = 0, Tools = { weather }, ToolChoice = ChatToolChoice.CreateRequiredChoice(), AllowParallelToolCalls = false };
        List<ChatMessage> messages = [new UserChatMessage("Weather in Paris?")];

        ChatCompletion whole = await Chat().CompleteChatAsync(messages, options);
        Assert.Equal(ChatFinishReason.ToolCalls, whole.FinishReason);
        ChatToolCall call = Assert.Single(whole.ToolCalls);
        Assert.Equal("get_weather", call.FunctionName);
        using var arguments = System.Text.Json.JsonDocument.Parse(call.FunctionArguments);
        Assert.Contains(arguments.RootElement.GetProperty("unit").GetString(), (string[])["c", "f"]);

        var streamedArguments = new System.Text.StringBuilder();
        string? streamedName = null;
        ChatFinishReason? finish = null;
        await foreach (StreamingChatCompletionUpdate update in Chat().CompleteChatStreamingAsync(messages, options))
        {
            foreach (StreamingChatToolCallUpdate part in update.ToolCallUpdates)
            {
                streamedName ??= part.FunctionName;
                streamedArguments.Append(part.FunctionArgumentsUpdate?.ToString());
            }

            finish = update.FinishReason ?? finish;
        }

        Assert.Equal(ChatFinishReason.ToolCalls, finish);
        Assert.Equal("get_weather", streamedName);
        Assert.Equal(call.FunctionArguments.ToString(), streamedArguments.ToString());

        // The call and its result go back as the next turn; the model answers (in text: tool_choice none).
        messages.Add(new AssistantChatMessage([call]));
        messages.Add(new ToolChatMessage(call.Id, "21 degrees"));
        ChatCompletion answer = await Chat().CompleteChatAsync(messages,
            new ChatCompletionOptions { MaxOutputTokenCount = 6, Temperature = 0, Tools = { weather }, ToolChoice = ChatToolChoice.CreateNoneChoice() });
        Assert.NotEqual(ChatFinishReason.ToolCalls, answer.FinishReason);
    }
}
