using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Serving.Server.Tests.Apis;

public class ChatApiTests(ServingServer server) : IClassFixture<ServingServer>
{
    private static object Chat(string text, int maxTokens, bool stream = false) => new
    {
        model = "tiny",
        messages = new[] { new { role = "user", content = text } },
        max_tokens = maxTokens,
        temperature = 0,
        stream,
        stream_options = stream ? new { include_usage = true } : null,
    };

    [Fact]
    public async Task StreamingFollowsTheOpenAiEventFormat()
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", Chat("Hello", 6, stream: true));
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType!.MediaType);
        string body = await response.Content.ReadAsStringAsync();

        string[] events = body.Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.All(events, e => Assert.StartsWith("data: ", e));
        Assert.DoesNotContain("event:", body);
        Assert.Equal("data: [DONE]", events[^1]);
        JsonElement[] chunks = events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement).ToArray();
        Assert.All(chunks, chunk => Assert.Equal("chat.completion.chunk", chunk.GetProperty("object").GetString()));
        Assert.Single(chunks.Select(chunk => (chunk.GetProperty("id").GetString(), chunk.GetProperty("created").GetInt64())).Distinct());
        Assert.Equal("assistant", chunks[0].GetProperty("choices")[0].GetProperty("delta").GetProperty("role").GetString());

        JsonElement usageChunk = chunks[^1];
        Assert.Equal(0, usageChunk.GetProperty("choices").GetArrayLength());
        Assert.Equal(6, usageChunk.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        JsonElement last = chunks[^2].GetProperty("choices")[0];
        Assert.Equal("length", last.GetProperty("finish_reason").GetString());
        Assert.All(chunks[..^2], chunk => Assert.Equal(JsonValueKind.Null, chunk.GetProperty("choices")[0].GetProperty("finish_reason").ValueKind));
    }

    [Fact]
    public async Task ThirtyTwoSimultaneousStreamsAllCompleteWithTheirTokenCounts()
    {
        using HttpClient client = server.Client();
        async Task<int> Stream(int i)
        {
            var body = new
            {
                model = "tiny",
                messages = new[] { new { role = "user", content = $"Request {i} says hello" } },
                max_tokens = 10 + i % 7,
                temperature = 0.8,
                seed = i,
                ignore_eos = true,
                stream = true,
                stream_options = new { include_usage = true },
            };
            using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", body);
            string text = await response.Content.ReadAsStringAsync();
            string usage = text.Split("\n\n", StringSplitOptions.RemoveEmptyEntries)[^2]["data: ".Length..];
            return JsonDocument.Parse(usage).RootElement.GetProperty("usage").GetProperty("completion_tokens").GetInt32();
        }

        int[] counts = await Task.WhenAll(Enumerable.Range(0, 32).Select(Stream));
        Assert.Equal(Enumerable.Range(0, 32).Select(i => 10 + i % 7), counts);
        Assert.Equal(0, server.Engine.Kv.NumUsedBlocks);
    }

    [Fact]
    public async Task ACancelledStreamGivesItsKvMemoryBack()
    {
        using HttpClient client = server.Client();
        var request = new HttpRequestMessage(HttpMethod.Post, "v1/chat/completions")
        {
            Content = JsonContent.Create(new { model = "tiny", messages = new[] { new { role = "user", content = "Go on" } }, max_tokens = 1900, ignore_eos = true, stream = true }),
        };
        using (HttpResponseMessage response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead))
        {
            using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());
            Assert.StartsWith("data: ", await reader.ReadLineAsync());
            // The role chunk goes out at submission; the engine admits the request at its next step.
            for (int i = 0; i < 100 && server.Engine.Kv.NumUsedBlocks == 0; i++)
            {
                await Task.Delay(20);
            }

            Assert.True(server.Engine.Kv.NumUsedBlocks > 0);
        }

        for (int i = 0; i < 100 && server.Engine.Kv.NumUsedBlocks > 0; i++)
        {
            await Task.Delay(50);
        }

        Assert.Equal(0, server.Engine.Kv.NumUsedBlocks);
    }

    [Fact]
    public async Task SameSeedSameOutputAndNChoicesAreIndexed()
    {
        using HttpClient client = server.Client();
        var body = new { model = "tiny", messages = new[] { new { role = "user", content = "Tell" } }, max_tokens = 12, temperature = 1.0, seed = 42, n = 3 };
        JsonElement first = await (await client.PostAsJsonAsync("v1/chat/completions", body)).Content.ReadFromJsonAsync<JsonElement>();
        JsonElement second = await (await client.PostAsJsonAsync("v1/chat/completions", body)).Content.ReadFromJsonAsync<JsonElement>();

        string[] Texts(JsonElement response) => response.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("message").GetProperty("content").GetString()!).ToArray();
        Assert.Equal(Texts(first), Texts(second));
        Assert.Equal([0, 1, 2], first.GetProperty("choices").EnumerateArray().Select(c => c.GetProperty("index").GetInt32()));
        Assert.Equal(first.GetProperty("usage").GetProperty("prompt_tokens").GetInt32() + first.GetProperty("usage").GetProperty("completion_tokens").GetInt32(),
            first.GetProperty("usage").GetProperty("total_tokens").GetInt32());
    }

    [Fact]
    public async Task ARepeatedPromptReportsCachedTokens()
    {
        using HttpClient client = server.Client();
        object body = Chat(string.Join(' ', Enumerable.Repeat("and the light was good", 12)), 3);
        await client.PostAsJsonAsync("v1/chat/completions", body);
        JsonElement again = await (await client.PostAsJsonAsync("v1/chat/completions", body)).Content.ReadFromJsonAsync<JsonElement>();
        int cached = again.GetProperty("usage").GetProperty("prompt_tokens_details").GetProperty("cached_tokens").GetInt32();
        Assert.True(cached >= server.Engine.BlockTokens, $"cached {cached}");
    }

    [Theory]
    [InlineData("""{"model":"tiny","messages":[}""", null)]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":"hot"}""", "temperature")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"temperature":3}""", "temperature")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"top_p":0}""", "top_p")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"n":0}""", "n")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":0}""", "max_tokens")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4000}""", "max_tokens")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stop":[1,2]}""", "stop")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}""", "top_logprobs")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}""", "stream_options")]
    [InlineData("""{"model":"tiny","messages":[]}""", "messages")]
    [InlineData("""{"model":"tiny","messages":[{"role":"wizard","content":"hi"}]}""", "messages")]
    [InlineData("""{"model":"tiny","messages":[{"role":"assistant","content":"hi"}]}""", "messages")]
    [InlineData("""{"messages":[{"role":"user","content":"hi"}]}""", "model")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f g"}}]}""", "tools")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}""", "tool_choice")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"string","pattern":"x"}}}]}""", "tools")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tool_choice":"required"}""", "tool_choice")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"},{"role":"tool","content":"x"}]}""", "messages")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"string","pattern":"^a"}}}}""", "response_format")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"string"}}}}""", "response_format")]
    [InlineData("""{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"xml"}}""", "response_format")]
    public async Task BadRequestsAre400NamingTheParameter(string body, string? param)
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsync("v1/chat/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await OpenAiErrorReader.Read(response);
        Assert.Equal("invalid_request_error", error.Type);
        Assert.Equal(param, error.Param);
        Assert.False(string.IsNullOrWhiteSpace(error.Message));
    }

    [Theory]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[null]}""", "messages")]
    [InlineData("tokenize", """{"model":"tiny","messages":[null]}""", "messages")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":[{"type":1,"text":"hi"}]}]}""", "messages")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":{"type":1}}""", "response_format")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":"json"}""", "response_format")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"tools":"x"}""", "tools")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":"5"}""", "max_tokens")]
    [InlineData("v1/chat/completions", """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"stop_token_ids":[-1]}""", "stop_token_ids")]
    [InlineData("v1/completions", """{"model":"tiny","prompt":"hi","stop_token_ids":[1000000000]}""", "stop_token_ids")]
    public async Task MalformedFieldsAre400sNamingTheFieldNever500s(string path, string body, string param)
    {
        using HttpClient client = server.Client();
        Assert.Equal(param, RawHttp.AssertError(await RawHttp.PostAsync(client, path, body), 400));
    }

    [Fact]
    public async Task AnUnknownModelIs404AndATooLargeBodyIs413()
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage missing = await client.PostAsJsonAsync("v1/chat/completions", new { model = "gpt-5", messages = new[] { new { role = "user", content = "hi" } } });
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("model_not_found", (await OpenAiErrorReader.Read(missing)).Code);

        using HttpResponseMessage large = await client.PostAsJsonAsync("v1/chat/completions", Chat(new string('a', 70_000), 1));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, large.StatusCode);
        var tooLarge = await OpenAiErrorReader.Read(large);
        Assert.Contains("65536", tooLarge.Message);
        Assert.Equal("request_too_large", tooLarge.Code);
    }
}
