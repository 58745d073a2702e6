using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Tests.Generation;

namespace Serving.Runtime.Tests.Quantization;

/// <summary>
/// The batching engine, prefix cache and KV compression on the q4 tiny model: MatMulNBits takes
/// M = batch rows in decode and up to a window of rows in prefill, and nothing else changes.
/// </summary>
public sealed class QuantizedEngineTests(QuantizedModelFixture fixture) : IClassFixture<QuantizedModelFixture>
{
    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900)];

    private static GenerationRequest Greedy(int[] prompt, int maxTokens) =>
        new() { PromptIds = prompt, MaxTokens = maxTokens, Sampling = SamplingParams.Greedy, IgnoreEos = true };

    private static int[] Solo(DecoderModel model, int[] prompt, int maxTokens, KvCompressionOptions? compression = null) =>
        [.. new Generator(model).Generate(prompt, new GenerateOptions(maxTokens, StopAtEos: false, KvCompression: compression)).TokenIds];

    [Fact]
    public async Task BatchedGreedyOutputEqualsUnbatchedOnQ4()
    {
        using DecoderModel model = DecoderModel.Load(fixture.Folders["q4"], new DecoderLoadOptions { Dtype = "q4" });
        using DecoderModel paged = DecoderModel.Load(fixture.Folders["q4"], new DecoderLoadOptions { Dtype = "q4", PagedAttention = true });
        using var engine = new Engine(paged, new EngineOptions { PrefixCaching = false });
        (int Length, int MaxTokens)[] shapes = [(1, 9), (3, 20), (17, 12), (40, 15), (9, 6)];
        var streams = shapes.Select((shape, i) => engine.TrySubmit([Greedy(Prompt(shape.Length, i), shape.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        for (int i = 0; i < shapes.Length; i++)
        {
            Assert.Equal(Solo(model, Prompt(shapes[i].Length, i), shapes[i].MaxTokens), results[i].Tokens);
        }
    }

    [Fact]
    public async Task PrefixCacheAndKvCompressionGiveTheSoloOutputOnQ4()
    {
        using DecoderModel model = DecoderModel.Load(fixture.Folders["q4"], new DecoderLoadOptions { Dtype = "q4" });
        using DecoderModel paged = DecoderModel.Load(fixture.Folders["q4"], new DecoderLoadOptions { Dtype = "q4", PagedAttention = true });
        var compression = new KvCompressionOptions { Policy = "window", Budget = 20, Beta = 6 };
        using var engine = new Engine(paged, new EngineOptions { KvCompression = compression });
        int[] first = Prompt(50, 3), second = [.. first[..40], .. Prompt(7, 4)];
        await EngineReader.ReadAll(engine.TrySubmit([Greedy(first, 4)])![0]);
        var reused = await EngineReader.ReadAll(engine.TrySubmit([Greedy(second, 30)])![0]);

        Assert.True(reused.Usage.CachedTokens > 0);
        Assert.True(engine.NumKvCompressions > 0);
        Assert.Equal(Solo(model, second, 30, compression), reused.Tokens);
    }
}
