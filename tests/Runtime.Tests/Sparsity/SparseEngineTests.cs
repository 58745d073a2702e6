using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Generation;

namespace Serving.Runtime.Tests.Sparsity;

/// <summary>The batching engine on a sparsified model: batched decode (M = batch) and chunked prefill use the op unchanged.</summary>
public sealed class SparseEngineTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly DecoderModel _model, _paged;

    public SparseEngineTests()
    {
        string dense = Path.Combine(_temp.Path, "dense"), sparse = Path.Combine(_temp.Path, "sparse");
        Gemma3ModelWriter.WriteRandom(dense, Gemma3Presets.Tiny, seed: 9);
        Sparsifier.Run(new SparsifyOptions(dense, sparse, PruningMethod.Magnitude));
        _model = DecoderModel.Load(sparse);
        _paged = DecoderModel.Load(sparse, new DecoderLoadOptions { PagedAttention = true });
    }

    [Fact]
    public async Task ConcurrentSequencesMatchTheirSoloRuns()
    {
        using var engine = new Engine(_paged, new EngineOptions { PrefixCaching = false });
        (int Length, int MaxTokens)[] shapes = [(1, 9), (3, 20), (17, 12), (40, 15), (9, 6)];
        var streams = shapes.Select((shape, i) => engine.TrySubmit([Greedy(Prompt(shape.Length, i), shape.MaxTokens)])![0]).ToArray();
        var results = await Task.WhenAll(streams.Select(EngineReader.ReadAll));
        for (int i = 0; i < shapes.Length; i++)
        {
            int[] prompt = Prompt(shapes[i].Length, i);
            int[] solo = [.. new Generator(_model).Generate(prompt, new GenerateOptions(shapes[i].MaxTokens, StopAtEos: false)).TokenIds];
            Assert.Equal(solo, results[i].Tokens);
        }
    }

    private static int[] Prompt(int length, int salt) => [.. Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900)];

    private static GenerationRequest Greedy(int[] prompt, int maxTokens) =>
        new() { PromptIds = prompt, MaxTokens = maxTokens, Sampling = SamplingParams.Greedy, IgnoreEos = true };

    public void Dispose()
    {
        _model.Dispose();
        _paged.Dispose();
        _temp.Dispose();
    }
}
