using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Tests.KvCompression;

namespace Serving.Runtime.Tests.Generation;

/// <summary>
/// A folder in another export style with <see cref="CalibratedModelFixture"/>'s weights (same preset and
/// seed) and its KV calibration, loaded as exported and for the engine.
/// </summary>
public abstract class ExportStyleFixture : IDisposable
{
    private readonly TempFolder _folder = new();

    protected ExportStyleFixture(Gemma3ExportStyle style)
    {
        Style = style;
        Gemma3ModelWriter.WriteRandom(_folder.Path, Gemma3Presets.Tiny, CalibratedModelFixture.Seed, style: style);
        using (var ours = new TempFolder())
        {
            // The calibration measures queries before RoPE, the same in every style: ours is tapped.
            Gemma3ModelWriter.WriteRandom(ours.Path, Gemma3Presets.Tiny, CalibratedModelFixture.Seed);
            CalibratedModelFixture.Calibrate(ours.Path).Save(Path.Combine(_folder.Path, KvCalibration.FileName));
        }

        Model = DecoderModel.Load(_folder.Path);
        PagedModel = DecoderModel.Load(_folder.Path, new DecoderLoadOptions { PagedAttention = true });
    }

    public Gemma3ExportStyle Style { get; }
    public DecoderModel Model { get; }
    public DecoderModel PagedModel { get; }

    public void Dispose()
    {
        Model.Dispose();
        PagedModel.Dispose();
        _folder.Dispose();
    }
}

public sealed class OnnxCommunityStyleFixture() : ExportStyleFixture(Gemma3ExportStyle.OnnxCommunity);

public sealed class GenAiStyleFixture() : ExportStyleFixture(Gemma3ExportStyle.GenAi);

public sealed class OptimumStyleFixture() : ExportStyleFixture(Gemma3ExportStyle.Optimum);

public sealed class EngineOnOnnxCommunityTests(OnnxCommunityStyleFixture fixture, CalibratedModelFixture ours)
    : EngineOnExportStyleTests<OnnxCommunityStyleFixture>(fixture, ours), IClassFixture<CalibratedModelFixture>;

public sealed class EngineOnGenAiTests(GenAiStyleFixture fixture, CalibratedModelFixture ours)
    : EngineOnExportStyleTests<GenAiStyleFixture>(fixture, ours), IClassFixture<CalibratedModelFixture>;

public sealed class EngineOnOptimumTests(OptimumStyleFixture fixture, CalibratedModelFixture ours)
    : EngineOnExportStyleTests<OptimumStyleFixture>(fixture, ours), IClassFixture<CalibratedModelFixture>;

/// <summary>
/// The engine on another style's folder (onnx-community, GenAI, Optimum): continuous batching, the prefix cache and TriAttention give the
/// tokens of single-sequence runs, the compressed ones those of our graph's masked runs over the same weights.
/// </summary>
public abstract class EngineOnExportStyleTests<TFixture>(TFixture fixture, CalibratedModelFixture ours)
    : IClassFixture<TFixture>
    where TFixture : ExportStyleFixture
{
    private static GenerationRequest Greedy(int[] prompt, int maxTokens) =>
        new() { PromptIds = prompt, MaxTokens = maxTokens, Sampling = SamplingParams.Greedy, IgnoreEos = true };

    private int[] Solo(int[] prompt, int maxTokens) =>
        [.. new Generator(fixture.Model).Generate(prompt, new GenerateOptions(maxTokens, StopAtEos: false)).TokenIds];

    [Fact]
    public async Task BatchedSequencesMatchTheExportsOwnSoloRuns()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false });
        (int Length, int MaxTokens)[] shapes = [(1, 9), (17, 12), (40, 20), (5, 1), (33, 14)];
        var streams = shapes.Select((shape, i) => engine.TrySubmit([Greedy(CalibratedModelFixture.Text(shape.Length, i), shape.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        for (int i = 0; i < shapes.Length; i++)
        {
            Assert.Equal(Solo(CalibratedModelFixture.Text(shapes[i].Length, i), shapes[i].MaxTokens), results[i].Tokens);
        }

        Assert.Equal(0, engine.Kv.NumUsedBlocks);
    }

    [Fact]
    public async Task ACachedPrefixIsReusedAndGivesTheSameOutput()
    {
        using var engine = new Engine(fixture.PagedModel, new EngineOptions());
        int[] first = CalibratedModelFixture.Text(50, 3);
        int[] second = [.. first[..40], .. CalibratedModelFixture.Text(7, 4)];
        await EngineReader.ReadAll(engine.TrySubmit([Greedy(first, 4)])![0]);
        var reused = await EngineReader.ReadAll(engine.TrySubmit([Greedy(second, 16)])![0]);
        Assert.True(reused.Usage.CachedTokens > 0);
        Assert.Equal(Solo(second, 16), reused.Tokens);
    }

    [Fact]
    public async Task TriAttentionUnderBatchingGivesOurGraphsMaskedRuns()
    {
        var options = new KvCompressionOptions { Policy = "triattention", Budget = 20, Beta = 6 };
        using var engine = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false, KvCompression = options });
        (int Length, int MaxTokens)[] shapes = [(3, 50), (12, 45), (9, 1), (6, 33)];
        var streams = shapes.Select((shape, i) => engine.TrySubmit([Greedy(CalibratedModelFixture.Text(shape.Length, i), shape.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        for (int i = 0; i < shapes.Length; i++)
        {
            // Our graph drops the evicted slots and reads true positions: the reference for every style.
            GenerationResult masked = new Generator(ours.Model).Generate(CalibratedModelFixture.Text(shapes[i].Length, i),
                new GenerateOptions(shapes[i].MaxTokens, StopAtEos: false, KvCompression: options));
            Assert.Equal(masked.TokenIds, results[i].Tokens);
        }

        Assert.True(engine.NumKvCompressions > 5);
    }

    [Fact]
    public async Task SlidingLayersAreCappedAtTheWindowThoughTheExportKeepsEveryToken()
    {
        // The export returns every past token for every layer; the paged cache keeps a sliding layer's last window only.
        int[] prompt = CalibratedModelFixture.Text(60, 9);
        using var styled = new Engine(fixture.PagedModel, new EngineOptions { PrefixCaching = false });
        using var serving = new Engine(ours.PagedModel, new EngineOptions { PrefixCaching = false });
        await EngineReader.ReadAll(styled.TrySubmit([Greedy(prompt, 20)])![0]);
        await EngineReader.ReadAll(serving.TrySubmit([Greedy(prompt, 20)])![0]);
        Assert.Equal(serving.Kv.PeakUsedBlocks, styled.Kv.PeakUsedBlocks);
        int everyToken = Gemma3Presets.Tiny.NumHiddenLayers * ((80 + styled.BlockTokens - 1) / styled.BlockTokens);
        Assert.True(styled.Kv.PeakUsedBlocks < everyToken, $"{styled.Kv.PeakUsedBlocks} blocks, {everyToken} if every layer kept every token");
    }

    [Fact]
    public void TheExportAsItIsCannotCompressItsCache()
    {
        // GroupQueryAttention rotates at positions counted from its cache, Optimum's sliding layers count slots: evicting would shift them.
        Assert.NotNull(fixture.Model.Signature.CompressionBlocker);
        var error = Assert.Throws<ArgumentException>(() => new Generator(fixture.Model).Generate(CalibratedModelFixture.Text(5, 1),
            new GenerateOptions(3, KvCompression: new KvCompressionOptions { Policy = "window", Budget = 20 })));
        Assert.Contains(fixture.Model.Signature.CompressionBlocker!, error.Message);
        Assert.True(fixture.PagedModel.Signature.SupportsKvCompression);
    }
}
