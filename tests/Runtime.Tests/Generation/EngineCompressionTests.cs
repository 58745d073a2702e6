using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Tests.KvCompression;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation;

/// <summary>KV compression under continuous batching, checked against the single-sequence generator with the same options.</summary>
public sealed class EngineCompressionTests(CalibratedModelFixture fixture, TinyModelFixture uncalibrated)
    : IClassFixture<CalibratedModelFixture>, IClassFixture<TinyModelFixture>
{
    private static readonly KvCompressionOptions Small = new() { Policy = "triattention", Budget = 20, Beta = 6 };

    private static GenerationRequest Greedy(int[] prompt, int maxTokens, string? policy = null, int? budget = null) =>
        new() { PromptIds = prompt, MaxTokens = maxTokens, Sampling = SamplingParams.Greedy, IgnoreEos = true, KvPolicy = policy, KvBudget = budget };

    private GenerationResult Solo(int[] prompt, int maxTokens, KvCompressionOptions? compression) =>
        new Generator(fixture.Model).Generate(prompt, new GenerateOptions(maxTokens, StopAtEos: false, KvCompression: compression));

    [Fact]
    public async Task ABudgetAtLeastTheLengthGivesExactlyTheUncompressedOutput()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false, KvCompression = Small with { Budget = 200 } });
        int[] prompt = CalibratedModelFixture.Text(12, 1);
        var result = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 40)])![0]);
        Assert.Equal(Solo(prompt, 40, null).TokenIds, result.Tokens);
        Assert.Equal(0, engine.NumKvCompressions);
    }

    [Theory]
    [InlineData("triattention")]
    [InlineData("window")]
    [InlineData("knorm")]
    public async Task BatchedSequencesMatchTheirUnbatchedRunsThroughManyCompressions(string policy)
    {
        KvCompressionOptions options = Small with { Policy = policy };
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false, KvCompression = options });
        (int Length, int MaxTokens)[] shapes = [(3, 50), (12, 45), (15, 60), (9, 1), (6, 33)];
        var streams = shapes.Select((shape, i) => engine.TrySubmit([Greedy(CalibratedModelFixture.Text(shape.Length, i), shape.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        for (int i = 0; i < shapes.Length; i++)
        {
            GenerationResult solo = Solo(CalibratedModelFixture.Text(shapes[i].Length, i), shapes[i].MaxTokens, options);
            Assert.Equal(solo.TokenIds, results[i].Tokens);
            Assert.Equal(Math.Min(shapes[i].Length + shapes[i].MaxTokens - 1, 26), results[i].Usage.KvTokensPeak);
        }

        Assert.True(engine.NumKvCompressions > 10);
        Assert.Equal(0, engine.Kv.NumUsedBlocks);
    }

    [Fact]
    public async Task CompressionChangesTheOutputOfALongSequence()
    {
        // Guards the tests above: with 20 of ~80 tokens kept, a random model's greedy output diverges.
        int[] prompt = CalibratedModelFixture.Text(10, 7);
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false, KvCompression = Small });
        var result = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 70)])![0]);
        Assert.NotEqual(Solo(prompt, 70, null).TokenIds, result.Tokens);
    }

    [Fact]
    public async Task APromptLongerThanTheCapIsPrefilledInPiecesAndResumesFromThePrefixCache()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { KvCompression = Small });
        int[] prompt = CalibratedModelFixture.Text(70, 3);
        GenerationResult solo = Solo(prompt, 12, Small);
        var first = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 12)])![0]);
        var second = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 12)])![0]);
        Assert.Equal(solo.TokenIds, first.Tokens);
        Assert.Equal(solo.TokenIds, second.Tokens);
        Assert.True(second.Usage.CachedTokens is > 0 and <= 26, $"resumed from {second.Usage.CachedTokens} cached tokens");
        Assert.Equal(26, second.Usage.KvTokensPeak);
    }

    [Fact]
    public async Task BlocksPrefilledAfterAnEvictionAreNeverServedToAnotherPolicy()
    {
        // Cap 45 = three whole 15-token blocks; the chunk after the first compression is block 3, computed
        // over a compressed past. It used to be cached under its token ids and served to uncompressed requests.
        var compressed = new KvCompressionOptions { Policy = "window", Budget = 20, Beta = 25 };
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { KvCompression = compressed });
        int[] prompt = CalibratedModelFixture.Text(70, 5);
        var first = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 8)])![0]);
        Assert.Equal(Solo(prompt, 8, compressed).TokenIds, first.Tokens);
        Assert.True(first.Usage.EvictedTokens > 0);

        var full = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 8, KvCompressionOptions.None)])![0]);
        Assert.Equal(Solo(prompt, 8, null).TokenIds, full.Tokens);
        Assert.True(full.Usage.CachedTokens is > 0 and <= 45, $"resumed from {full.Usage.CachedTokens} cached tokens");

        var again = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 8, "window", 30)])![0]);
        Assert.Equal(Solo(prompt, 8, compressed with { Budget = 30 }).TokenIds, again.Tokens);
    }

    [Fact]
    public async Task ARequestMayChooseItsOwnPolicyAndBudget()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false });
        int[] prompt = CalibratedModelFixture.Text(8, 5);
        var result = await EngineReader.ReadAll(engine.TrySubmit([Greedy(prompt, 50, "window", 24)])![0]);
        Assert.Equal(Solo(prompt, 50, new KvCompressionOptions { Policy = "window", Budget = 24 }).TokenIds, result.Tokens);
        Assert.Equal(24 + 128, engine.CompressionOf(Greedy(prompt, 50, "window", 24)).CapTokens(8));
    }

    [Fact]
    public void ACompressedRequestNeedsOnlyItsCappedCachesBlocks()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false });
        int[] prompt = CalibratedModelFixture.Text(100, 5);
        long full = engine.BlocksNeeded(Greedy(prompt, 1000));
        long compressed = engine.BlocksNeeded(Greedy(prompt, 1000, "knorm", 64));
        // tiny: 2 global layers of 16-token blocks; the 2 sliding layers need the same in both (window + a 512-token chunk).
        long sliding = 2 * ((15 + 512 + 16 + 15) / 16);
        Assert.Equal(2 * ((1100 + 15) / 16) + sliding, full);
        Assert.Equal(2 * ((64 + 128 + 15) / 16) + sliding, compressed);
    }

    [Theory]
    [InlineData("fifo", null, "kv_policy")]
    [InlineData("window", 8, "kv_budget")]
    [InlineData("window", int.MaxValue - 60, "kv_budget")]
    public void BadCompressionFieldsAreNamed(string policy, int? budget, string param)
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false });
        Assert.Equal(param, engine.Validate(Greedy([2, 3], 4, policy, budget))?.Param);
    }

    [Fact]
    public void TriAttentionWithoutACalibrationIsRefusedWithTheFix()
    {
        using var engine = new Engine(uncalibrated.PagedModel, new EngineOptions { PrefixCaching = false });
        var error = engine.Validate(Greedy([2, 3], 4, "triattention"));
        Assert.Equal("kv_policy", error?.Param);
        Assert.Contains("calibrate-kv", error?.Message);
    }
}
