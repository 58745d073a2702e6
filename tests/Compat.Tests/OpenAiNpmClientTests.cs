using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;
using Serving.Server.Tests;

namespace Serving.Compat.Tests;

/// <summary>
/// The server configured with one folder of each export style we read (onnx-community and ONNX Runtime
/// GenAI GroupQueryAttention graphs and Optimum's traced one beside ours), each served by the paged engine.
/// </summary>
public sealed class ExportStylesServer : ServingServer
{
    public static readonly string[] Styles = ["serving", "onnx-community", "genai", "optimum"];

    // Written before the base constructor starts the host, which reads Settings.
    private static readonly Lazy<string> Root = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), "serving-compat-styles-" + Guid.NewGuid().ToString("N"));
        foreach (string style in Styles)
        {
            Gemma3ModelWriter.WriteRandom(Path.Combine(root, style), Gemma3Presets.Tiny, seed: 4, style: Gemma3ExportStyles.Find(style)!.Value);
        }

        return root;
    });

    protected override IReadOnlyDictionary<string, string> Settings => Styles
        .SelectMany((style, i) => new[]
        {
            KeyValuePair.Create($"Serving:Models:{i}:Id", "tiny-" + style),
            KeyValuePair.Create($"Serving:Models:{i}:Path", Path.Combine(Root.Value, style)),
        })
        .ToDictionary();

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(Root.Value))
        {
            Directory.Delete(Root.Value, recursive: true);
        }
    }
}

/// <summary>The official <c>openai</c> npm client (6.30.1 on Node 20) against the server on a real socket, on a model of each export style.</summary>
public class OpenAiNpmClientTests(ExportStylesServer server) : IClassFixture<ExportStylesServer>
{
    public static TheoryData<string> Models => [.. ExportStylesServer.Styles.Select(style => "tiny-" + style)];

    [Theory]
    [MemberData(nameof(Models))]
    public void StreamingWithUsageMatchesTheWholeResponseAndErrorsParse(string model)
    {
        JsonObject seen = NodePeer.Run("openai-client-check.mjs",
            new JsonObject { ["baseURL"] = new Uri(server.BaseAddress, "v1").ToString(), ["model"] = model }, TimeSpan.FromSeconds(120));

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
