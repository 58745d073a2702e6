using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime.Tensors;

namespace Serving.Server.Tests.Hosting;

/// <summary>The server with <c>Serving:KvCacheDtype=fp16</c> and a 256 KiB KV budget.</summary>
public sealed class Fp16KvServer : ServingServer
{
    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:KvCacheDtype"] = "fp16",
        ["Serving:KvCacheBytes"] = "262144",
    };
}

public class KvCacheDtypeTests(Fp16KvServer server) : IClassFixture<Fp16KvServer>
{
    [Fact]
    public async Task AnFp16PoolServesCompletionsInTheSameBudget()
    {
        // tiny: 1 KV head × 32 dims, 16-slot blocks: 2 KB a block in fp16 (4 KB in fp32), so 128 of them in 256 KiB.
        Assert.Equal(TensorElementType.Float16, server.Engine.Kv.Layout.ElementType);
        Assert.Equal((2048, 128), (server.Engine.Kv.BlockBytes, server.Engine.Kv.NumBlocks));

        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions",
            new { model = "tiny", prompt = "In the beginning", max_tokens = 12, temperature = 0, ignore_eos = true });
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        JsonElement json = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal(12, json.GetProperty("usage").GetProperty("completion_tokens").GetInt32());
        Assert.Equal(0, server.Engine.Kv.NumUsedBlocks);
    }
}
