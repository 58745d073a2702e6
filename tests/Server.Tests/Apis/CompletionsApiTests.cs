using System.Net;
using System.Net.Http.Json;
using System.Text.Json;

namespace Serving.Server.Tests.Apis;

public class CompletionsApiTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Fact]
    public async Task TextAndTokenPromptsGiveTheSameCompletion()
    {
        using HttpClient client = server.Client();
        var tokens = await (await client.PostAsJsonAsync("tokenize", new { model = "tiny", prompt = "In the beginning" })).Content.ReadFromJsonAsync<JsonElement>();
        int[] ids = tokens.GetProperty("tokens").EnumerateArray().Select(t => t.GetInt32()).ToArray();
        Assert.Equal(ids.Length, tokens.GetProperty("count").GetInt32());

        JsonElement byText = await Complete(client, new { model = "tiny", prompt = "In the beginning", max_tokens = 8, temperature = 0 });
        JsonElement byIds = await Complete(client, new { model = "tiny", prompt = ids, max_tokens = 8, temperature = 0 });
        Assert.Equal("text_completion", byText.GetProperty("object").GetString());
        Assert.Equal(Text(byText, 0), Text(byIds, 0));
        Assert.Equal(ids.Length, byText.GetProperty("usage").GetProperty("prompt_tokens").GetInt32());
    }

    [Fact]
    public async Task SeveralPromptsAndEchoAndLogprobs()
    {
        using HttpClient client = server.Client();
        JsonElement response = await Complete(client, new { model = "tiny", prompt = new[] { "Light", "Darkness" }, max_tokens = 4, temperature = 0, echo = true, logprobs = 2 });
        Assert.StartsWith("Light", Text(response, 0));
        Assert.StartsWith("Darkness", Text(response, 1));
        JsonElement logprobs = response.GetProperty("choices")[0].GetProperty("logprobs");
        Assert.Equal(4, logprobs.GetProperty("tokens").GetArrayLength());
        Assert.All(logprobs.GetProperty("token_logprobs").EnumerateArray(), lp => Assert.True(lp.GetSingle() <= 0));
    }

    [Fact]
    public async Task AMaxTokensThatWouldWrapIsRefusedAndRunningStreamsFinish()
    {
        using HttpClient client = server.Client();
        using var running = await client.SendAsync(new HttpRequestMessage(HttpMethod.Post, "v1/completions")
        {
            Content = JsonContent.Create(new { model = "tiny", prompt = "Light", max_tokens = 40, ignore_eos = true, stream = true }),
        }, HttpCompletionOption.ResponseHeadersRead);

        // 100 + 2,147,483,587 wrapped negative as an int, passed the length check and failed every later engine step.
        int[] prompt = Enumerable.Repeat(100, 100).ToArray();
        using HttpResponseMessage completion = await client.PostAsJsonAsync("v1/completions", new { model = "tiny", prompt, max_tokens = 2147483587 });
        Assert.Equal(HttpStatusCode.BadRequest, completion.StatusCode);
        Assert.Equal("max_tokens", (await OpenAiErrorReader.Read(completion)).Param);

        string message = string.Join(' ', Enumerable.Repeat("and the light", 30));
        using HttpResponseMessage chat = await client.PostAsJsonAsync("v1/chat/completions",
            new { model = "tiny", messages = new[] { new { role = "user", content = message } }, max_tokens = 2147483600 });
        Assert.Equal(HttpStatusCode.BadRequest, chat.StatusCode);
        Assert.Equal("max_tokens", (await OpenAiErrorReader.Read(chat)).Param);

        string events = await running.Content.ReadAsStringAsync();
        Assert.DoesNotContain("\"error\"", events);
        Assert.Contains("\"finish_reason\":\"length\"", events);
        Assert.EndsWith("data: [DONE]\n\n", events);
    }

    [Fact]
    public async Task DetokenizeInvertsTokenize()
    {
        using HttpClient client = server.Client();
        var tokens = await (await client.PostAsJsonAsync("tokenize", new { model = "tiny", prompt = "and God saw the light", add_special_tokens = false })).Content.ReadFromJsonAsync<JsonElement>();
        var text = await (await client.PostAsJsonAsync("detokenize", new { model = "tiny", tokens = tokens.GetProperty("tokens") })).Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("and God saw the light", text.GetProperty("prompt").GetString());

        using HttpResponseMessage bad = await client.PostAsJsonAsync("detokenize", new { model = "tiny", tokens = new[] { -1 } });
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("tokens", (await OpenAiErrorReader.Read(bad)).Param);
    }

    [Theory]
    [InlineData("""{"model":"tiny","prompt":""}""", "prompt")]
    [InlineData("""{"model":"tiny","prompt":[]}""", "prompt")]
    [InlineData("""{"model":"tiny","prompt":[1,"a"]}""", "prompt")]
    [InlineData("""{"model":"tiny","prompt":[1,99999]}""", "prompt")]
    [InlineData("""{"model":"tiny","prompt":"hi","logprobs":21}""", "logprobs")]
    [InlineData("""{"model":"tiny","prompt":"hi","stop":""}""", "stop")]
    [InlineData("""{"model":"tiny","prompt":"hi","stop":["a","b","c","d","e"]}""", "stop")]
    [InlineData("""{"model":"tiny","prompt":"hi","kv_policy":"fifo"}""", "kv_policy")]
    [InlineData("""{"model":"tiny","prompt":"hi","kv_policy":"window","kv_budget":4}""", "kv_budget")]
    [InlineData("""{"model":"tiny","prompt":"hi","kv_policy":"triattention"}""", "kv_policy")]
    [InlineData("""{"model":"tiny","prompt":"hi","kv_budget":"many"}""", "kv_budget")]
    public async Task BadRequestsAre400NamingTheParameter(string body, string param)
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsync("v1/completions", new StringContent(body, System.Text.Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal(param, (await OpenAiErrorReader.Read(response)).Param);
    }

    [Fact]
    public async Task ModelsListsTheDemoModelsAndTheTrainedOneWrites()
    {
        using HttpClient client = server.Client();
        JsonElement models = await client.GetFromJsonAsync<JsonElement>("v1/models");
        Assert.Equal("list", models.GetProperty("object").GetString());
        string[] ids = models.GetProperty("data").EnumerateArray().Select(m => m.GetProperty("id").GetString()!).ToArray();
        Assert.Equal(["kjv-gemma3", "shapes-clip", "tiny", "clip-tiny"], ids);
        // Serving:Device auto, and this build's CPU package: every model runs on the CPU.
        Assert.All(models.GetProperty("data").EnumerateArray(), m => Assert.Equal("cpu", m.GetProperty("device").GetString()));

        // The committed model's greedy continuation, the same as KjvGemma3ModelTests records through the runtime.
        JsonElement completion = await Complete(client, new { model = "kjv-gemma3", prompt = "In the beginning God created", max_tokens = 24, temperature = 0, ignore_eos = true });
        Assert.Equal(" in the earth.\nThen the people answered and said, I am the LORD, and the earth is come", Text(completion, 0));
    }

    [Theory]
    [InlineData("window")]
    [InlineData("knorm")]
    public async Task ARequestChoosesItsKvPolicyAndBudget(string policy)
    {
        // 200 tokens pass the cap of 16 + 128 (the default beta), so the cache is compressed.
        using HttpClient client = server.Client();
        long compressionsBefore = server.Engine.NumKvCompressions;
        JsonElement response = await Complete(client, new { model = "tiny", prompt = "In the beginning", max_tokens = 200, temperature = 0, ignore_eos = true, kv_policy = policy, kv_budget = 16 });
        Assert.Equal(200, response.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.True(server.Engine.NumKvCompressions > compressionsBefore);
    }

    [Fact]
    public async Task TheTrainedModelShipsItsKvCalibrationForTriAttention()
    {
        using HttpClient client = server.Client();
        JsonElement response = await Complete(client, new
        {
            model = "kjv-gemma3", prompt = "And it came to pass", max_tokens = 300, temperature = 0, ignore_eos = true, kv_policy = "triattention", kv_budget = 128,
        });
        Assert.Equal(300, response.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.False(string.IsNullOrWhiteSpace(Text(response, 0)));
    }

    private static async Task<JsonElement> Complete(HttpClient client, object body)
    {
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    private static string Text(JsonElement response, int choice) => response.GetProperty("choices")[choice].GetProperty("text").GetString()!;
}
