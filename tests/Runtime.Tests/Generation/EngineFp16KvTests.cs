using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Tests.Generation.Kv;
using Serving.Runtime.Tests.KvCompression;

namespace Serving.Runtime.Tests.Generation;

/// <summary>The engine over an fp16 KV pool (<see cref="KvCacheDtype.Fp16"/>): twice the tokens per byte, the same engine around it.</summary>
public sealed class EngineFp16KvTests(CalibratedModelFixture fixture) : IClassFixture<CalibratedModelFixture>, IDisposable
{
    private readonly DecoderModel _fp16 = DecoderModel.Load(fixture.Folder, new DecoderLoadOptions { PagedAttention = true, KvCacheDtype = KvCacheDtype.Fp16 });

    private static GenerationRequest Greedy(int length, int salt, int maxTokens) => new()
    {
        PromptIds = CalibratedModelFixture.Text(length, salt),
        MaxTokens = maxTokens,
        Sampling = SamplingParams.Greedy,
        IgnoreEos = true,
    };

    private static EngineOptions Options(string? policy, int maxBatchSize = 64) => new()
    {
        PrefixCaching = false,
        MaxBatchSize = maxBatchSize,
        KvCompression = policy is null ? new KvCompressionOptions() : new KvCompressionOptions { Policy = policy, Budget = 20, Beta = 6 },
    };

    private static readonly (int Length, int Salt, int MaxTokens)[] Shapes = [(3, 0, 30), (12, 1, 25), (40, 2, 35), (9, 3, 1), (20, 4, 28)];

    public void Dispose() => _fp16.Dispose();

    [Fact]
    public void ThePoolHoldsTwiceTheBlocksInTheSameBytes()
    {
        var options = new EngineOptions { KvCacheBytes = 1 << 20 };
        using var fp32 = new Engine(fixture.PagedModel, options);
        using var fp16 = new Engine(_fp16, options);
        Assert.Equal(fp32.Kv.BlockBytes, 2 * fp16.Kv.BlockBytes);
        Assert.Equal(2 * fp32.Kv.NumBlocks, fp16.Kv.NumBlocks);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, fp16.Kv.Layout.ElementType);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("triattention")]
    [InlineData("window")]
    public async Task ShortRunsGiveTheFp32PoolsGreedyTokens(string? policy)
    {
        // fp16 keys and values move the logits (and TriAttention's scores, read from the widened keys) by ~1e-3 of
        // their spread on this model: no greedy choice or eviction here is that close. Key-norm scores are: knorm
        // evicts another token in one sequence of five, so it is left out.
        Assert.Equal(await Run(fixture.PagedModel, policy), await Run(_fp16, policy));
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData("triattention", false)]
    [InlineData("triattention", true)]
    public async Task BatchedRunsEqualTheirOneAtATimeRuns(string? policy, bool staged)
    {
        // Compressions read fp16 keys (widened) for the policy and move fp16 slots: in place, or staged through copies as on a GPU.
        List<List<int>> alone = [];
        foreach (var shape in Shapes)
        {
            using var engine = new Engine(_fp16, Options(policy, maxBatchSize: 1));
            alone.Add((await EngineReader.ReadAll(engine.TrySubmit([Greedy(shape.Length, shape.Salt, shape.MaxTokens)])![0])).Tokens);
        }

        Assert.Equal(alone, await Run(_fp16, policy, staged ? bytes => new StagedKvPool(bytes) : null));
    }

    private static async Task<List<List<int>>> Run(DecoderModel model, string? policy, Func<long, KvPool>? pool = null)
    {
        using var engine = new Engine(model, Options(policy), logger: null, telemetry: null, allocatePool: pool);
        var streams = Shapes.Select(s => engine.TrySubmit([Greedy(s.Length, s.Salt, s.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        Assert.True(policy is null || engine.NumKvCompressions > 5, $"{engine.NumKvCompressions} compressions");
        return [.. results.Select(r => r.Tokens)];
    }
}
