using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Sparsity;

namespace Serving.Server.Tests.Apis;

/// <summary>The server configured with a `serving sparsify` folder: the native op is registered on load.</summary>
public sealed class SparseModelServer : ServingServer
{
    // Written before the base constructor starts the host, which reads Settings.
    private static readonly Lazy<string> Folder = new(() =>
    {
        string root = Path.Combine(Path.GetTempPath(), "serving-server-sparse-" + Guid.NewGuid().ToString("N"));
        Gemma3ModelWriter.WriteRandom(Path.Combine(root, "dense"), Gemma3Presets.Tiny, seed: 4);
        Sparsifier.Run(new SparsifyOptions(Path.Combine(root, "dense"), Path.Combine(root, "sparse"), PruningMethod.Magnitude));
        return Path.Combine(root, "sparse");
    });

    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:Models:0:Id"] = "tiny-2of4",
        ["Serving:Models:0:Path"] = Folder.Value,
    };

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(Path.GetDirectoryName(Folder.Value)))
        {
            Directory.Delete(Path.GetDirectoryName(Folder.Value)!, recursive: true);
        }
    }
}

public class SparseModelTests(SparseModelServer server) : IClassFixture<SparseModelServer>
{
    [Fact]
    public async Task ConcurrentCompletionsOnASparsifiedModelAgreeWithASoloOne()
    {
        using HttpClient client = server.Client();
        object Body(string prompt) => new { model = "tiny-2of4", prompt, max_tokens = 8, temperature = 0, ignore_eos = true };
        string solo = await Text(client, Body("In the beginning"));
        string[] together = await Task.WhenAll(Enumerable.Range(0, 4).Select(i => Text(client, Body(i == 0 ? "In the beginning" : $"Light {i}"))));

        Assert.Equal(solo, together[0]);
        Assert.All(together, text => Assert.False(string.IsNullOrEmpty(text)));
    }

    private static async Task<string> Text(HttpClient client, object body)
    {
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", body);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        JsonElement json = await response.Content.ReadFromJsonAsync<JsonElement>();
        return json.GetProperty("choices")[0].GetProperty("text").GetString()!;
    }
}
