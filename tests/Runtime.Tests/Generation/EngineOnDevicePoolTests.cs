using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Tests.Generation.Kv;
using Serving.Runtime.Tests.KvCompression;
using Serving.Runtime.Tests.Sparsity;

namespace Serving.Runtime.Tests.Generation;

/// <summary>
/// The engine over a KV pool it reaches only through copies, as it reaches device memory: on the CPU a
/// <see cref="StagedKvPool"/>; with <c>SERVING_TEST_DEVICE=cuda</c> (benchmarks/gpu/check.sh) the model on
/// CUDA with its pool in device memory. Either gives the host pool's tokens, through prefix-cache
/// hits, batching and compressions of blocks other sequences share.
/// </summary>
public sealed class EngineOnDevicePoolTests(CalibratedModelFixture fixture) : IClassFixture<CalibratedModelFixture>
{
    private static readonly int[] Prefix = CalibratedModelFixture.Text(40, 9);

    public static TheoryData<string?> Policies => [null, "triattention", "window"];

    [Theory]
    [MemberData(nameof(Policies))]
    public async Task GivesTheHostPoolsTokens(string? policy)
    {
        EngineOptions options = policy is null ? new() : new() { KvCompression = new KvCompressionOptions { Policy = policy, Budget = 20, Beta = 6 } };
        List<List<int>> host;
        using (var engine = new Engine(fixture.PagedModel, options))
        {
            host = await Workload(engine);
            Assert.True(engine.NumKvCompressions > (policy is null ? -1 : 10));
        }

        if (SingleOpModel.Device.IsCuda)
        {
            using DecoderModel model = DecoderModel.Load(fixture.Folder, new DecoderLoadOptions { PagedAttention = true, Device = SingleOpModel.Device });
            using var engine = new Engine(model, options);
            Assert.IsType<CudaKvPool>(engine.Kv.Pool);
            Assert.Equal(host, await Workload(engine));
            return;
        }

        StagedKvPool? pool = null;
        using (var engine = new Engine(fixture.PagedModel, options, logger: null, telemetry: null, allocatePool: bytes => pool = new StagedKvPool(bytes)))
        {
            Assert.Equal(host, await Workload(engine));
            Assert.Equal(0, engine.Kv.NumUsedBlocks);
        }

        // Compressions read the global layers' blocks out and write the kept ones back; nothing else touches the pool.
        Assert.Equal(0, pool!.Copies);
        if (policy is null)
        {
            Assert.Equal((0, 0), (pool.Reads, pool.Writes));
        }
        else
        {
            Assert.True(pool.Reads > 0 && pool.Writes > 0, $"{pool.Reads} reads, {pool.Writes} writes");
        }
    }

    /// <summary>One request alone (its prefix blocks cached), then four sharing that prefix at once (compressed ones share the first block, which their compactions then copy); each one's greedy tokens.</summary>
    private static async Task<List<List<int>>> Workload(Engine engine)
    {
        static GenerationRequest Greedy(int tail, int maxTokens) => new()
        {
            PromptIds = [.. Prefix, .. CalibratedModelFixture.Text(tail, tail)],
            MaxTokens = maxTokens,
            Sampling = SamplingParams.Greedy,
            IgnoreEos = true,
        };

        var first = await EngineReader.ReadAll(engine.TrySubmit([Greedy(5, 30)])![0]);
        GenerationRequest[] batch = [Greedy(3, 40), Greedy(9, 25), Greedy(1, 45), Greedy(14, 33)];
        var streams = batch.Select(request => engine.TrySubmit([request])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        Assert.All(results, r => Assert.True(r.Usage.CachedTokens >= 16, $"a prefix hit of {r.Usage.CachedTokens} tokens"));
        return [first.Tokens, .. results.Select(r => r.Tokens)];
    }
}
