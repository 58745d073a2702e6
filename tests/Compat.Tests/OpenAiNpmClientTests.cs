using System.Text.Json.Nodes;
using Serving.Server.Tests;

namespace Serving.Compat.Tests;

/// <summary>The official <c>openai</c> npm client (6.30.1 on Node 20) against the server on a real socket.</summary>
public class OpenAiNpmClientTests(ServingServer server) : IClassFixture<ServingServer>
{
    [Fact]
    public void StreamingWithUsageMatchesTheWholeResponseAndErrorsParse()
    {
        JsonObject seen = NodePeer.Run("openai-client-check.mjs",
            new JsonObject { ["baseURL"] = new Uri(server.BaseAddress, "v1").ToString(), ["model"] = "tiny" }, TimeSpan.FromSeconds(120));

        JsonNode stream = seen["stream"]!, whole = seen["whole"]!;
        Assert.Equal(whole["text"]!.GetValue<string>(), stream["text"]!.GetValue<string>());
        Assert.Equal(whole["finish"]!.GetValue<string>(), stream["finish"]!.GetValue<string>());
        Assert.Equal(whole["usage"]!["completion_tokens"]!.GetValue<int>(), stream["usage"]!["completion_tokens"]!.GetValue<int>());
        Assert.Equal(whole["usage"]!["prompt_tokens"]!.GetValue<int>(), stream["usage"]!["prompt_tokens"]!.GetValue<int>());
        Assert.Equal(["assistant"], stream["roles"]!.AsArray().Select(role => role!.GetValue<string>()));
        Assert.False(string.IsNullOrEmpty(seen["completionText"]!.GetValue<string>()));

        // chat.completions.parse with a zod schema: the reply parsed and validated by zod itself, streamed or not.
        JsonNode parsed = seen["parsed"]!;
        Assert.Equal("stop", parsed["finish"]!.GetValue<string>());
        Assert.Contains(parsed["value"]!["genre"]!.GetValue<string>(), (string[])["drama", "comedy"]);
        Assert.Equal(parsed["value"]!.ToJsonString(), seen["streamedParsed"]!.ToJsonString());

        JsonNode error = seen["error"]!;
        Assert.Equal(404, error["status"]!.GetValue<int>());
        Assert.Equal("model_not_found", error["code"]!.GetValue<string>());
        Assert.Equal("model", error["param"]!.GetValue<string>());
    }
}
