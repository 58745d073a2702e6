using System.Net;
using System.Net.Http.Json;

namespace Serving.Server.Tests.Apis;

/// <summary>A server that takes bodies of several megabytes and queues at most 4 sequences.</summary>
public sealed class LargeBodyServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:MaxRequestBodyBytes"] = (8 << 20).ToString(System.Globalization.CultureInfo.InvariantCulture),
        ["Serving:MaxQueueLength"] = "4",
    };
}

public class PromptLimitTests(LargeBodyServer server) : IClassFixture<LargeBodyServer>
{
    /// <summary>Text longer in bytes than the context's tokens could ever stand for.</summary>
    private string TooLongText()
    {
        int bytesPerToken = server.Engine.Model.Tokenizer.MaxBytesPerToken!.Value;
        return new string('a', server.Engine.ContextLength * bytesPerToken + 1);
    }

    [Theory]
    [InlineData("v1/completions", "prompt")]
    [InlineData("v1/chat/completions", "messages")]
    [InlineData("tokenize", "prompt")]
    public async Task TextThatCannotFitTheContextIsRefusedBeforeItIsTokenised(string path, string param)
    {
        using HttpClient client = server.Client();
        string text = TooLongText();
        object body = param == "messages"
            ? new { model = "tiny", messages = new[] { new { role = "user", content = text } }, max_tokens = 1 }
            : new { model = "tiny", prompt = new[] { "short", text }, max_tokens = 1 };
        if (path == "tokenize")
        {
            body = new { model = "tiny", prompt = text };
        }

        using HttpResponseMessage response = await client.PostAsJsonAsync(path, body);
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await OpenAiErrorReader.Read(response);
        Assert.Equal("context_length_exceeded", error.Code);
        Assert.Equal(param, error.Param);
        Assert.Contains($"maximum context length is {server.Engine.ContextLength} tokens", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheTinyTokenizerHasABytesPerTokenBound()
    {
        int? bound = server.Engine.Model.Tokenizer.MaxBytesPerToken;
        Assert.NotNull(bound);
        Assert.InRange(bound.Value, 4, 1024);
    }

    [Theory]
    [InlineData("v1/completions", """{"model":"tiny","prompt":["a","b","c","d","e"],"max_tokens":1}""", "prompt", 5)]
    [InlineData("v1/completions", """{"model":"tiny","prompt":["a","b","c"],"n":2,"max_tokens":1}""", "prompt", 6)]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"n":5,"max_tokens":1}""", "n", 5)]
    public async Task ACallOfMoreSequencesThanTheQueueHoldsIsA400NotA429(string path, string body, string param, int sequences)
    {
        using HttpClient client = server.Client();
        var answer = await RawHttp.PostAsync(client, path, body);
        Assert.Equal(param, RawHttp.AssertError(answer, 400));
        string message = answer.Body!["error"]!["message"]!.GetValue<string>();
        Assert.Contains($"{sequences} sequences", message, StringComparison.Ordinal);
        Assert.Contains("wait queue of 4 (Serving:MaxQueueLength)", message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ACallThatFillsTheQueueExactlyIsServed()
    {
        using HttpClient client = server.Client();
        var answer = await RawHttp.PostAsync(client, "v1/completions", """{"model":"tiny","prompt":["a","b"],"n":2,"max_tokens":1}""");
        Assert.Equal(200, answer.Status);
    }
}
