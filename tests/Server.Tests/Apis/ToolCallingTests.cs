using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace Serving.Server.Tests.Apis;

/// <summary>
/// tools and tool_choice on the random tiny model: a constrained call is a call of a listed
/// function whose arguments validate against its parameters (JsonSchema.Net), whole or streamed.
/// </summary>
public class ToolCallingTests(ServingServer server) : IClassFixture<ServingServer>
{
    private const string WeatherParameters = """{"type":"object","properties":{"city":{"type":"string","maxLength":10},"unit":{"enum":["c","f"]}},"required":["city","unit"],"additionalProperties":false}""";
    private const string TimeParameters = """{"type":"object","properties":{"zone":{"enum":["utc","local"]}},"required":["zone"],"additionalProperties":false}""";

    private static JsonArray Tools() =>
    [
        new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_weather", ["description"] = "Weather in a city", ["parameters"] = JsonNode.Parse(WeatherParameters) } },
        new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_time", ["parameters"] = JsonNode.Parse(TimeParameters) } },
    ];

    private static JsonObject Request(JsonNode? toolChoice, bool stream = false, int n = 1, bool? parallel = null)
    {
        var body = new JsonObject
        {
            ["model"] = "tiny",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Weather in Paris?" }),
            ["tools"] = Tools(),
            ["tool_choice"] = toolChoice,
            ["n"] = n,
            ["seed"] = 2,
            ["temperature"] = 1.0,
            ["max_tokens"] = 200,
            ["stream"] = stream,
        };
        if (parallel is { } p)
        {
            body["parallel_tool_calls"] = p;
        }

        return body;
    }

    private static void AssertValidCall(string name, string arguments)
    {
        string schema = name switch
        {
            "get_weather" => WeatherParameters,
            "get_time" => TimeParameters,
            _ => throw new Xunit.Sdk.XunitException($"unknown function {name}"),
        };
        using JsonDocument document = JsonDocument.Parse(arguments);
        Assert.True(JsonSchema.FromText(schema).Evaluate(document.RootElement).IsValid, $"{name}({arguments})");
    }

    private async Task<JsonElement> PostAsync(JsonObject body)
    {
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        return await response.Content.ReadFromJsonAsync<JsonElement>();
    }

    [Fact]
    public async Task RequiredGivesCallsOfListedFunctionsWithValidArguments()
    {
        JsonElement completion = await PostAsync(Request("required", n: 6));
        int calls = 0;
        foreach (JsonElement choice in completion.GetProperty("choices").EnumerateArray())
        {
            if (choice.GetProperty("finish_reason").GetString() == "length")
            {
                continue;
            }

            Assert.Equal("tool_calls", choice.GetProperty("finish_reason").GetString());
            JsonElement message = choice.GetProperty("message");
            Assert.Equal(JsonValueKind.Null, message.GetProperty("content").ValueKind);
            foreach (JsonElement call in message.GetProperty("tool_calls").EnumerateArray())
            {
                Assert.StartsWith("call_", call.GetProperty("id").GetString());
                Assert.Equal("function", call.GetProperty("type").GetString());
                AssertValidCall(call.GetProperty("function").GetProperty("name").GetString()!, call.GetProperty("function").GetProperty("arguments").GetString()!);
                calls++;
            }
        }

        Assert.True(calls > 0, "no choice completed a call within 200 tokens");
    }

    [Fact]
    public async Task ANamedFunctionWithoutParallelCallsGivesExactlyThatOneCall()
    {
        var choice = new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_time" } };
        JsonElement completion = await PostAsync(Request(choice, n: 4, parallel: false));
        foreach (JsonElement c in completion.GetProperty("choices").EnumerateArray())
        {
            Assert.Equal("tool_calls", c.GetProperty("finish_reason").GetString());
            JsonElement call = Assert.Single(c.GetProperty("message").GetProperty("tool_calls").EnumerateArray());
            Assert.Equal("get_time", call.GetProperty("function").GetProperty("name").GetString());
            AssertValidCall("get_time", call.GetProperty("function").GetProperty("arguments").GetString()!);
        }
    }

    [Fact]
    public async Task StreamedCallsArriveAsToolCallDeltas()
    {
        var choice = new JsonObject { ["type"] = "function", ["function"] = new JsonObject { ["name"] = "get_time" } };
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", Request(choice, stream: true));
        string[] events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        JsonElement[] choices = [.. events[..^1].Select(e => JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0])];
        Assert.DoesNotContain(choices, c => c.GetProperty("delta").TryGetProperty("content", out JsonElement content) && content.GetString() is { Length: > 0 });
        JsonElement delta = choices.Single(c => c.GetProperty("delta").TryGetProperty("tool_calls", out _)).GetProperty("delta").GetProperty("tool_calls")[0];
        Assert.Equal(0, delta.GetProperty("index").GetInt32());
        Assert.StartsWith("call_", delta.GetProperty("id").GetString());
        Assert.Equal("get_time", delta.GetProperty("function").GetProperty("name").GetString());
        AssertValidCall("get_time", delta.GetProperty("function").GetProperty("arguments").GetString()!);
        Assert.Equal("tool_calls", choices[^1].GetProperty("finish_reason").GetString());
    }

    [Fact]
    public async Task AutoAnswersInTextOrWithAValidCall()
    {
        JsonElement completion = await PostAsync(Request("auto", n: 8));
        foreach (JsonElement choice in completion.GetProperty("choices").EnumerateArray())
        {
            JsonElement message = choice.GetProperty("message");
            if (choice.GetProperty("finish_reason").GetString() == "tool_calls")
            {
                foreach (JsonElement call in message.GetProperty("tool_calls").EnumerateArray())
                {
                    AssertValidCall(call.GetProperty("function").GetProperty("name").GetString()!, call.GetProperty("function").GetProperty("arguments").GetString()!);
                }
            }
            else
            {
                Assert.Equal(JsonValueKind.String, message.GetProperty("content").ValueKind);
                Assert.False(message.TryGetProperty("tool_calls", out _));
            }
        }
    }

    [Fact]
    public async Task AConversationWithACallAndItsResultRendersAndContinues()
    {
        var body = Request("none");
        body["messages"] = new JsonArray(
            new JsonObject { ["role"] = "user", ["content"] = "Weather in Paris?" },
            new JsonObject
            {
                ["role"] = "assistant",
                ["content"] = null,
                ["tool_calls"] = new JsonArray(new JsonObject
                {
                    ["id"] = "call_1",
                    ["type"] = "function",
                    ["function"] = new JsonObject { ["name"] = "get_weather", ["arguments"] = """{"city":"Paris","unit":"c"}""" },
                }),
            },
            new JsonObject { ["role"] = "tool", ["tool_call_id"] = "call_1", ["content"] = "21 degrees, sunny" });
        body["max_tokens"] = 8;
        JsonElement completion = await PostAsync(body);
        JsonElement choice = completion.GetProperty("choices")[0];
        Assert.NotEqual("tool_calls", choice.GetProperty("finish_reason").GetString());
        Assert.Equal(JsonValueKind.String, choice.GetProperty("message").GetProperty("content").ValueKind);

        using HttpClient client = server.Client();
        string rendered = (await (await client.PostAsJsonAsync("tokenize", new { model = "tiny", messages = body["messages"] })).Content.ReadFromJsonAsync<JsonElement>()).ToString();
        Assert.False(string.IsNullOrEmpty(rendered));
    }
}
