using System.Reflection;
using Serving.GenAiPeer;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Quantization;

namespace Serving.Compat.Tests;

/// <summary>
/// ONNX Runtime GenAI 0.20.0 (NuGet Microsoft.ML.OnnxRuntimeGenAI, in this process, on the ONNX
/// Runtime 1.32.0 we pin) loads our folders through the genai_config.json we write and decodes
/// greedily what we decode, token for token, past the sliding window.
/// </summary>
public sealed class OnnxRuntimeGenAiTests : IDisposable
{
    /// <summary>24 new tokens after 10 prompt tokens: 34 tokens cross tiny's 16-token window twice.</summary>
    private const int NewTokens = 24;

    private static readonly int[] Prompt = [2, 651, 6077, 315, 2300, 4271, 17, 12, 40, 41];

    private readonly string _root = Path.Combine(Path.GetTempPath(), "serving-genai", Guid.NewGuid().ToString("N"));

    [Theory]
    [InlineData(null)]
    [InlineData("q4")]
    public void GenAiGreedyTokensEqualOursOnTheTinyModel(string? dtype)
    {
        string folder = Path.Combine(_root, "tiny");
        Gemma3ModelWriter.WriteRandom(folder, Gemma3Presets.Tiny, seed: 8);
        if (dtype is not null)
        {
            Quantizer.AddVariant(folder, dtype);
        }

        int[] prompt = [.. Prompt.Select(id => id % Gemma3Presets.Tiny.VocabSize)];
        AssertSameGreedyTokens(folder, dtype, prompt);
    }

    /// <summary>The trained model as committed: its genai_config.json and graph are the builder's.</summary>
    [Fact]
    public void GenAiGreedyTokensEqualOursOnKjvGemma3()
    {
        using DecoderModel model = DecoderModel.Load(KjvGemma3Folder);
        AssertSameGreedyTokens(KjvGemma3Folder, null, model.Tokenizer.Encode("And the LORD spake unto Moses, saying,"), newTokens: 160);
    }

    /// <summary>
    /// GenAI's own layout (GroupQueryAttention over one shared past/present buffer): GenAI runs the folder as
    /// written and decodes what our paged engine decodes from it.
    /// </summary>
    [Theory]
    [InlineData("tiny", null)]
    [InlineData("tiny", "q4")]
    [InlineData("kjv-gemma3", null)]
    public void GenAiRunsTheGenAiStyleAsOurPagedEngineDoes(string preset, string? dtype)
    {
        string folder = Path.Combine(_root, preset + "-genai");
        if (preset == "tiny")
        {
            Gemma3ModelWriter.WriteRandom(folder, Gemma3Presets.Tiny, seed: 8, style: Gemma3ExportStyle.GenAi);
        }
        else
        {
            Gemma3ModelWriter.Reexport(KjvGemma3Folder, folder, Gemma3ExportStyle.GenAi);
        }

        if (dtype is not null)
        {
            Quantizer.AddVariant(folder, dtype);
        }

        using DecoderModel model = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype, PagedAttention = true });
        int[] prompt = preset == "tiny" ? [.. Prompt.Select(id => id % Gemma3Presets.Tiny.VocabSize)] : model.Tokenizer.Encode("And the LORD spake unto Moses, saying,");
        int newTokens = preset == "tiny" ? NewTokens : 160;
        using Engine engine = BatchOfOne.CreateEngine(model, prompt.Length + newTokens);
        int[] ours = [.. BatchOfOne.Generate(engine, prompt, new GenerateOptions(newTokens, StopAtEos: false)).TokenIds];
        using var genai = GenAiSession.Open(folder, dtype is null ? null : OnnxVariant.FileName(dtype));
        Assert.DoesNotContain(ours, model.Generation.EosTokenIds.Contains);
        Assert.Equal(ours, genai.Greedy(prompt, newTokens).TokenIds);
    }

    private static void AssertSameGreedyTokens(string folder, string? dtype, int[] prompt, int newTokens = NewTokens)
    {
        int[] ours;
        IReadOnlyList<int> endIds;
        using (DecoderModel model = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype }))
        {
            ours = [.. new Generator(model).Generate(prompt, new GenerateOptions(newTokens, StopAtEos: false)).TokenIds];
            endIds = model.Generation.EosTokenIds;
        }

        using var genai = GenAiSession.Open(folder, dtype is null ? null : OnnxVariant.FileName(dtype));
        int[] theirs = genai.Greedy(prompt, newTokens).TokenIds;

        // GenAI stops after an end token (its config refuses ids outside the vocabulary, so the stop
        // cannot be turned off); these seeded prompts never reach one, so the whole runs compare.
        Assert.DoesNotContain(ours, endIds.Contains);
        Assert.Equal(ours, theirs);
        Assert.True(theirs.Distinct().Count() > 4, "the continuation should not be one repeated token");
    }

    private static string KjvGemma3Folder => Path.Combine(
        typeof(OnnxRuntimeGenAiTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "kjv-gemma3");

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
