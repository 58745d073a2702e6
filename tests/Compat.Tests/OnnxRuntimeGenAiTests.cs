using System.Reflection;
using System.Text.Json;
using Serving.GenAiPeer;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
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

    /// <summary>
    /// The committed trained model predates genai_config.json and declares num_logits_to_keep 0-d
    /// (GenAI feeds [1] and Slice refuses it): a copy gets both as `serving models create` writes them now.
    /// </summary>
    [Fact]
    public void GenAiGreedyTokensEqualOursOnKjvGemma3()
    {
        string folder = Path.Combine(_root, "kjv-gemma3");
        CopyFolder(KjvGemma3Folder, folder);
        AcceptOneElementLogitsCount(Path.Combine(folder, Gemma3ModelWriter.OnnxFile));
        Gemma3Config config = Gemma3Config.FromJson(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject());
        var layout = new GenAiDecoderLayout(Gemma3ModelWriter.OnnxFile, HasPositionIds: true, HasNumLogitsToKeep: true, PastPresentShareBuffer: false)
        {
            SlidingPresentLength = config.SlidingWindow - 1,
        };
        string json = GenAiConfig.Build(config, GenerationDefaults.Read(folder, config), layout).ToJsonString(new JsonSerializerOptions { WriteIndented = true });
        File.WriteAllText(Path.Combine(folder, GenAiConfig.FileName), json);

        using DecoderModel model = DecoderModel.Load(folder);
        AssertSameGreedyTokens(folder, null, model.Tokenizer.Encode("And the LORD spake unto Moses, saying,"), newTokens: 160);
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

    /// <summary>Our builder's num_logits_to_keep since 2026-12: no declared rank, Reshape to [1] where the old graph has Unsqueeze.</summary>
    private static void AcceptOneElementLogitsCount(string onnxPath)
    {
        ModelProto model = OnnxModelFile.Load(onnxPath);
        model.Graph.Input.Single(input => input.Name == "num_logits_to_keep").Type.TensorType.Shape = null;
        string negated = model.Graph.Node.Single(node => node.OpType == "Neg" && node.Input[0] == "num_logits_to_keep").Output[0];
        NodeProto unsqueeze = model.Graph.Node.Single(node => node.OpType == "Unsqueeze" && node.Input[0] == negated);
        var shape = new TensorProto { Name = unsqueeze.Name + "/one", DataType = (int)TensorProto.Types.DataType.Int64 };
        shape.Dims.Add(1);
        shape.Int64Data.Add(1);
        model.Graph.Initializer.Add(shape);
        unsqueeze.OpType = "Reshape";
        unsqueeze.Input[1] = shape.Name;
        OnnxModelFile.Save(model, onnxPath, long.MaxValue);
    }

    private static void CopyFolder(string source, string destination)
    {
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string target = Path.Combine(destination, Path.GetRelativePath(source, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
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
