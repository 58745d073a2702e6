using System.Reflection;
using System.Text.Json.Nodes;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Quantization;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Text;

namespace Serving.Compat.Tests;

/// <summary>
/// transformers.js (npm @huggingface/transformers 4.3.1 on onnxruntime-node) loads our tiny
/// Gemma 3 folder offline: same prompt ids, the same chat rendering, and the same greedy
/// continuation token for token. If it refuses the folder, the folder is wrong.
/// </summary>
public sealed class TransformersJsTests : IDisposable
{
    private const string Prompt = "In the beginning God created the heaven and the earth.";
    private const int NewTokens = 32;

    private static readonly string[] TrickyStrings =
    [
        "Hello, world!", "  two leading spaces and trailing  ", "don't, can't, it's", "naïve café — résumé",
        "emoji 🎉👍🏽 and 中文字符", "tabs\tand\nnew lines\r\n", "<start_of_turn>user\nhi<end_of_turn>", "12345 + 67890 = 80235",
        string.Join(' ', Enumerable.Range(0, 200).Select(i => (string[])["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs"] is var w ? w[i % w.Length] : "")),
    ];

    private readonly string _root = Path.Combine(Path.GetTempPath(), "serving-compat", Guid.NewGuid().ToString("N"));
    private readonly string _folder;

    public TransformersJsTests()
    {
        // transformers.js resolves a bare folder name under its local model path, as for a download.
        _folder = Path.Combine(_root, "tiny-gemma3");
        // Random tied-embedding models fall into short greedy cycles; seed 8's continuation of
        // the prompt has 21 distinct tokens in 32, so every step tests something new (seed 5 has
        // 7 since the generator's chunks became independent).
        Gemma3ModelWriter.WriteRandom(_folder, Gemma3Presets.Tiny, seed: 8);
    }

    [Fact]
    public void TransformersJsAgreesOnTokensChatAndGreedyContinuation()
    {
        var tokenizer = GemmaTokenizer.Load(_folder);
        ChatMessage[] chat = [new("system", "Be brief."), new("user", "Who made the earth?"), new("assistant", "God."), new("user", "When?")];
        var request = new JsonObject
        {
            ["model_dir"] = _folder,
            ["encode"] = new JsonArray([.. TrickyStrings.Select(s => JsonValue.Create(s))]),
            ["chats"] = new JsonArray(new JsonArray([.. chat.Select(m => new JsonObject { ["role"] = m.Role, ["content"] = m.Content })])),
            ["generate"] = new JsonObject { ["prompt"] = Prompt, ["max_new_tokens"] = NewTokens },
        };
        JsonObject peer = NodePeer.Run("transformers-check.mjs", request, TimeSpan.FromMinutes(3));

        for (int i = 0; i < TrickyStrings.Length; i++)
        {
            Assert.Equal(Ids(peer["encode"]![i]!), tokenizer.Encode(TrickyStrings[i]));
        }

        Assert.Equal(peer["chats"]![0]!.GetValue<string>(), ChatTemplate.Render(chat, addGenerationPrompt: true));

        int[] promptIds = tokenizer.Encode(Prompt);
        Assert.Equal(Ids(peer["generate"]!["prompt_token_ids"]!), promptIds);
        using var model = DecoderModel.Load(_folder);
        var ours = new Generator(model).Generate(promptIds, new GenerateOptions(NewTokens, StopAtEos: false));
        Assert.Equal(Ids(peer["generate"]!["token_ids"]!), ours.TokenIds);
        Assert.True(ours.TokenIds.Distinct().Count() > NewTokens / 2, "the continuation should not be one repeated token");
    }

    [Fact]
    public void TransformersJsLogitsMatchOursPastTheSlidingWindow()
    {
        // 3 windows long, so the sliding layers' masks and trimmed caches matter; transformers.js
        // feeds 1-based positions, ours start at 0: RoPE must depend on differences only.
        var random = new Random(17);
        int[] ids = [2, .. Enumerable.Range(0, 3 * Gemma3Presets.Tiny.SlidingWindow).Select(_ => random.Next(7, 768))];
        JsonObject peer = NodePeer.Run("transformers-check.mjs", new JsonObject
        {
            ["model_dir"] = _folder,
            ["forward"] = new JsonArray([.. ids.Select(id => JsonValue.Create(id))]),
        }, TimeSpan.FromMinutes(3));

        using var model = DecoderModel.Load(_folder);
        using var runner = new ModelRunner(model);
        int layers = model.Signature.Layers.Count;
        var empty = Enumerable.Range(0, 2 * layers).Select(_ => runner.EmptyPast(1)).ToArray();
        using DecoderOutputs outputs = runner.Run(new DecoderBatch(1, ids.Length, ids.Select(i => (long)i).ToArray(),
            ids.Select(_ => 1L).ToArray(), Enumerable.Range(0, ids.Length).Select(i => (long)i).ToArray(), empty[..layers], empty[layers..]));
        for (int s = 0; s < ids.Length; s++)
        {
            float[] theirs = [.. peer["forward"]![s]!.AsArray().Select(v => v!.GetValue<float>())];
            ReadOnlySpan<float> mine = outputs.Logits(0, s);
            double worst = 0, scale = 0;
            for (int v = 0; v < theirs.Length; v++)
            {
                worst = Math.Max(worst, Math.Abs(mine[v] - theirs[v]));
                scale = Math.Max(scale, Math.Abs(theirs[v]));
            }

            Assert.True(worst / scale < 1e-4, $"position {s}: relative difference {worst / scale:E2}");
        }

        foreach (var value in empty)
        {
            value.Dispose();
        }
    }

    /// <summary>
    /// transformers.js opens our quantized variants by dtype (its own file names) and generates what
    /// we generate from them: its onnxruntime-node runs the same MatMulNBits/GatherBlockQuantized.
    /// </summary>
    [Theory]
    [InlineData("tiny", "q4")]
    [InlineData("tiny", "q8")]
    [InlineData("tiny", "fp16")]
    [InlineData("kjv-gemma3", "q4")]
    [InlineData("kjv-gemma3", "fp16")]
    public void TransformersJsRunsOurQuantizedVariants(string preset, string dtype)
    {
        string source = preset == "tiny" ? _folder : KjvGemma3Folder;
        string folder = Path.Combine(_root, $"{preset}-{dtype}");
        Quantizer.Run(new QuantizeOptions(source, folder, dtype));
        AssertSameGreedyContinuation(folder, dtype);
    }

    /// <summary>
    /// The exports people download, written by our builder from the same weights: transformers.js runs
    /// onnx-community's GroupQueryAttention layout and Optimum's traced one as it runs those folders.
    /// </summary>
    [Theory]
    [InlineData("tiny", "onnx-community", "fp32")]
    [InlineData("tiny", "onnx-community", "q4")]
    [InlineData("tiny", "optimum", "fp32")]
    [InlineData("tiny", "optimum", "q4")]
    [InlineData("kjv-gemma3", "onnx-community", "fp32")]
    [InlineData("kjv-gemma3", "onnx-community", "q4")]
    [InlineData("kjv-gemma3", "optimum", "fp32")]
    [InlineData("kjv-gemma3", "optimum", "q4")]
    public void TransformersJsRunsOtherExportStyles(string preset, string styleName, string dtype)
    {
        Gemma3ExportStyle style = Gemma3ExportStyles.Find(styleName)!.Value;
        string folder = Path.Combine(_root, $"{preset}-{styleName}-{dtype}");
        if (preset == "tiny")
        {
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

        AssertSameGreedyContinuation(folder, dtype);
    }

    private static void AssertSameGreedyContinuation(string folder, string dtype)
    {
        JsonObject peer = NodePeer.Run("transformers-check.mjs", new JsonObject
        {
            ["model_dir"] = folder,
            ["dtype"] = dtype,
            ["generate"] = new JsonObject { ["prompt"] = Prompt, ["max_new_tokens"] = NewTokens },
        }, TimeSpan.FromMinutes(3));

        // Ours twice: the graph as exported (the CLI's single-sequence path) and rewritten for the server's paged engine.
        int[] expected = Ids(peer["generate"]!["token_ids"]!);
        using (var model = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype }))
        {
            int[] promptIds = model.Tokenizer.Encode(Prompt);
            Assert.Equal(expected, new Generator(model).Generate(promptIds, new GenerateOptions(NewTokens, StopAtEos: false)).TokenIds);
        }

        using var paged = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = dtype, PagedAttention = true });
        int[] prompt = paged.Tokenizer.Encode(Prompt);
        using Engine engine = BatchOfOne.CreateEngine(paged, prompt.Length + NewTokens);
        Assert.Equal(expected, BatchOfOne.Generate(engine, prompt, new GenerateOptions(NewTokens, StopAtEos: false)).TokenIds);
    }

    /// <summary>The trained model committed under models/kjv-gemma3 (a model that has learned text, so its continuations are not cycles).</summary>
    private static string KjvGemma3Folder => Path.Combine(
        typeof(TransformersJsTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "kjv-gemma3");

    private static int[] Ids(JsonNode node) => [.. node.AsArray().Select(id => id!.GetValue<int>())];

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
