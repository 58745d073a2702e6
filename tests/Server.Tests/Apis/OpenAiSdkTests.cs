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
}
