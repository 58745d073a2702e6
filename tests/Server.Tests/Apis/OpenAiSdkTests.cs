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
}
