using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace Serving.Server.Tests.Apis;

/// <summary>
/// response_format on both routes, streamed or not, with n and a seed: the random tiny model
/// knows nothing of JSON, so every valid output is the constraint's doing; JsonSchema.Net judges.
/// </summary>
public class ResponseFormatTests(ServingServer server) : IClassFixture<ServingServer>
{
    private const string Schema = """{"type":"object","properties":{"title":{"type":"string","maxLength":16},"year":{"type":"integer"},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3},"rating":{"anyOf":[{"type":"number"},{"type":"null"}]}},"required":["title","year","tags","rating"],"additionalProperties":false}""";

    private static JsonObject JsonSchemaFormat() => new()
    {
        ["type"] = "json_schema",
        ["json_schema"] = new JsonObject { ["name"] = "movie", ["strict"] = true, ["schema"] = JsonNode.Parse(Schema) },
    };

    private static void AssertValid(string text)
    {
        using JsonDocument document = JsonDocument.Parse(text);
        Assert.True(JsonSchema.FromText(Schema).Evaluate(document.RootElement).IsValid, text);
    }

    [Fact]
    public async Task ChatChoicesThatStopAreValidJsonOfTheSchema()
    {
        using HttpClient client = server.Client();
        var body = new JsonObject
        {
            ["model"] = "tiny",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "A movie, as JSON" }),
            ["response_format"] = JsonSchemaFormat(),
            ["n"] = 8,
            ["seed"] = 3,
            ["temperature"] = 1.0,
            ["max_tokens"] = 200,
        };
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        JsonElement choices = (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices");
        int stopped = 0;
        foreach (JsonElement choice in choices.EnumerateArray())
        {
            string content = choice.GetProperty("message").GetProperty("content").GetString()!;
            if (choice.GetProperty("finish_reason").GetString() == "stop")
            {
                stopped++;
                AssertValid(content);
            }
            else
            {
                Assert.Equal("length", choice.GetProperty("finish_reason").GetString());
                Assert.StartsWith("{\"title\":\"", content);
            }
        }

        Assert.True(stopped > 0, "no choice finished within 200 tokens");
    }

    [Fact]
    public async Task StreamedDeltasJoinIntoTheSameValidJson()
    {
        using HttpClient client = server.Client();
        var body = new JsonObject
        {
            ["model"] = "tiny",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "A movie" }),
            ["response_format"] = JsonSchemaFormat(),
            ["seed"] = 5,
            ["temperature"] = 0.0,
            ["max_tokens"] = 200,
            ["stream"] = true,
        };
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/chat/completions", body);
        string[] events = (await response.Content.ReadAsStringAsync()).Split("\n\n", StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("data: [DONE]", events[^1]);
        var text = new StringBuilder();
        string? finish = null;
        foreach (string e in events[..^1])
        {
            JsonElement choice = JsonDocument.Parse(e["data: ".Length..]).RootElement.GetProperty("choices")[0];
            if (choice.GetProperty("delta").TryGetProperty("content", out JsonElement content))
            {
                text.Append(content.GetString());
            }

            if (choice.GetProperty("finish_reason").ValueKind == JsonValueKind.String)
            {
                finish = choice.GetProperty("finish_reason").GetString();
            }
        }

        if (finish == "stop")
        {
            AssertValid(text.ToString());
        }
        else
        {
            Assert.Equal("length", finish);
            Assert.StartsWith("{\"title\":\"", text.ToString());
        }
    }

    [Fact]
    public async Task CompletionsJsonObjectModeGivesAnObject()
    {
        using HttpClient client = server.Client();
        var body = new JsonObject
        {
            ["model"] = "tiny",
            ["prompt"] = "{",
            ["response_format"] = new JsonObject { ["type"] = "json_object" },
            ["n"] = 4,
            ["seed"] = 11,
            ["temperature"] = 1.0,
            ["max_tokens"] = 120,
        };
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        foreach (JsonElement choice in (await response.Content.ReadFromJsonAsync<JsonElement>()).GetProperty("choices").EnumerateArray())
        {
            string text = choice.GetProperty("text").GetString()!;
            Assert.StartsWith("{", text);
            if (choice.GetProperty("finish_reason").GetString() == "stop")
            {
                Assert.Equal(JsonValueKind.Object, JsonDocument.Parse(text).RootElement.ValueKind);
            }
        }
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^x"}""", "pattern")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"integer","minimum":0}}}""", "minimum")]
    [InlineData("""{"enum":[]}""", "enum")]
    public async Task AnUnsupportedSchemaIs400NamingTheKeyword(string schema, string keyword)
    {
        using HttpClient client = server.Client();
        string body = """{"model":"tiny","messages":[{"role":"user","content":"hi"}],"response_format":{"type":"json_schema","json_schema":{"name":"s","schema":SCHEMA}}}""".Replace("SCHEMA", schema);
        using HttpResponseMessage response = await client.PostAsync("v1/chat/completions", new StringContent(body, Encoding.UTF8, "application/json"));
        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        var error = await OpenAiErrorReader.Read(response);
        Assert.Equal("response_format", error.Param);
        Assert.Contains($"'{keyword}'", error.Message);
    }
}
