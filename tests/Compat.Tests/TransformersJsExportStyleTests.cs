using System.Reflection;
using System.Text.Json.Nodes;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Quantization;

namespace Serving.Compat.Tests;

/// <summary>
/// The exports people download, written by our builder: transformers.js 4.3.1 (onnxruntime-node) runs the
/// onnx-community and Optimum styles as it runs those folders, and its greedy continuation equals the one our
/// paged engine gives on the same folder, token for token (the tiny Optimum folder: TransformersJsTests).
/// </summary>
public sealed class TransformersJsExportStyleTests : IDisposable
{
    private const string Prompt = "In the beginning God created the heaven and the earth.";
    private const int NewTokens = 24;

    private readonly string _root = Path.Combine(Path.GetTempPath(), "serving-compat", Guid.NewGuid().ToString("N"));

    [Theory]
    [InlineData("tiny", "onnx-community", "fp32")]
    [InlineData("tiny", "onnx-community", "q4")]
    [InlineData("kjv-gemma3", "onnx-community", "fp32")]
    [InlineData("kjv-gemma3", "onnx-community", "q4")]
    [InlineData("kjv-gemma3", "optimum", "fp32")]
    [InlineData("kjv-gemma3", "optimum", "q4")]
    public void TransformersJsGivesOurPagedEnginesTokens(string preset, string styleName, string dtype)
    {
        Gemma3ExportStyle style = Gemma3ExportStyles.Find(styleName)!.Value;
        string folder = Path.Combine(_root, $"{preset}-{styleName}");
        if (preset == "tiny")
        {
            // Seed 8: a continuation with many distinct tokens (see TransformersJsTests).
            Gemma3ModelWriter.WriteRandom(folder, Gemma3Presets.Tiny, seed: 8, style: style);
        }
        else
        {
            Gemma3ModelWriter.Reexport(KjvGemma3Folder, folder, style);
        }

        if (dtype != "fp32")
        {
            Quantizer.AddVariant(folder, dtype);
        }

        JsonObject peer = NodePeer.Run("transformers-check.mjs", new JsonObject
        {
            ["model_dir"] = folder,
            ["dtype"] = dtype,
            ["generate"] = new JsonObject { ["prompt"] = Prompt, ["max_new_tokens"] = NewTokens },
        }, TimeSpan.FromMinutes(3));

        using var model = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype, PagedAttention = true });
        int[] promptIds = model.Tokenizer.Encode(Prompt);
        Assert.Equal([.. peer["generate"]!["prompt_token_ids"]!.AsArray().Select(id => id!.GetValue<int>())], promptIds);
        using Engine engine = BatchOfOne.CreateEngine(model, promptIds.Length + NewTokens);
        var ours = BatchOfOne.Generate(engine, promptIds, new GenerateOptions(NewTokens, StopAtEos: false));
        Assert.Equal([.. peer["generate"]!["token_ids"]!.AsArray().Select(id => id!.GetValue<int>())], ours.TokenIds);
        Assert.True(ours.TokenIds.Distinct().Count() > 3, "the continuation should not be one repeated token");
    }

    private static string KjvGemma3Folder => Path.Combine(
        typeof(TransformersJsExportStyleTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "kjv-gemma3");

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
