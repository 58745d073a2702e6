using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// Writes a complete Hugging Face-style Gemma 3 folder: <c>config.json</c>,
/// <c>generation_config.json</c>, the tokenizer files and <c>onnx/model.onnx</c> with its
/// weights in <c>onnx/model.onnx_data</c>.
/// </summary>
public static class Gemma3ModelWriter
{
    public const string OnnxFile = "onnx/model.onnx";

    /// <summary>
    /// Writes the folder. <paramref name="weights"/> supplies each tensor in ONNX layout
    /// (see <see cref="Gemma3Weights.Specs"/>); tensors are written one at a time, so peak
    /// memory stays at the largest tensor (the embedding). <paramref name="progress"/> gets
    /// the bytes written so far and the total. <paramref name="writeTokenizer"/> false keeps the
    /// tokenizer files already in the folder (a trainer's corpus-specific vocabulary).
    /// </summary>
    public static void Write(string folder, Gemma3Config config, Func<WeightSpec, float[]> weights, IProgress<(long Done, long Total)>? progress = null,
        bool writeTokenizer = true, Gemma3ExportStyle style = Gemma3ExportStyle.Serving)
    {
        config.Validate();
        Directory.CreateDirectory(Path.Combine(folder, "onnx"));
        WriteOnnx(Path.Combine(folder, OnnxFile), config, weights, progress, style);
        WriteJson(Path.Combine(folder, "config.json"), config.ToJson());
        GenerationDefaults generation = Generation(config);
        WriteJson(Path.Combine(folder, "generation_config.json"), GenerationConfig(generation));
        WriteGenAiConfig(folder, config, generation, style);

        if (writeTokenizer)
        {
            Text.GemmaTokenizerWriter.Write(folder, config.VocabSize);
        }
    }

    /// <summary>
    /// Writes the fp32 weights of our folder <paramref name="source"/> (a trained model: models/kjv-gemma3)
    /// into <paramref name="output"/> in <paramref name="style"/>; every other file of the folder's top level
    /// (config, generation config, tokenizer, KV calibration) is copied as it is.
    /// </summary>
    public static void Reexport(string source, string output, Gemma3ExportStyle style)
    {
        Gemma3Config config = Gemma3Config.FromJson(JsonNode.Parse(File.ReadAllText(Path.Combine(source, "config.json")))!.AsObject());
        Directory.CreateDirectory(Path.Combine(output, "onnx"));
        WriteOnnx(Path.Combine(output, OnnxFile), config, Gemma3Weights.Reader(Path.Combine(source, OnnxFile)), null, style);
        foreach (string file in Directory.EnumerateFiles(source))
        {
            File.Copy(file, Path.Combine(output, Path.GetFileName(file)), overwrite: true);
        }

        WriteGenAiConfig(output, config, GenerationDefaults.Read(output, config), style);
    }

    /// <summary>
    /// genai_config.json for the styles ONNX Runtime GenAI runs: ours (no shared buffer; sliding presents of
    /// window − 1 slots) and GenAI's own (GroupQueryAttention over one past/present buffer, positions from the
    /// cache, no num_logits_to_keep). The other styles have none (a copied one is removed).
    /// </summary>
    private static void WriteGenAiConfig(string folder, Gemma3Config config, GenerationDefaults generation, Gemma3ExportStyle style)
    {
        GenAiDecoderLayout? layout = style switch
        {
            Gemma3ExportStyle.Serving => new GenAiDecoderLayout(OnnxFile, HasPositionIds: true, HasNumLogitsToKeep: true, PastPresentShareBuffer: false)
            {
                SlidingPresentLength = config.SlidingWindow - 1,
            },
            Gemma3ExportStyle.GenAi => new GenAiDecoderLayout(OnnxFile, HasPositionIds: false, HasNumLogitsToKeep: false, PastPresentShareBuffer: true),
            _ => null,
        };
        string path = Path.Combine(folder, GenAiConfig.FileName);
        if (layout is null)
        {
            File.Delete(path);
            return;
        }

        WriteJson(path, GenAiConfig.Build(config, generation, layout));
    }

    /// <summary>Seeded random weights: the same seed gives the same bytes.</summary>
    public static void WriteRandom(string folder, Gemma3Config config, ulong seed, IProgress<(long Done, long Total)>? progress = null,
        Gemma3ExportStyle style = Gemma3ExportStyle.Serving) =>
        Write(folder, config, spec => Gemma3Weights.Random(spec, seed), progress, style: style);

    private static void WriteOnnx(string path, Gemma3Config config, Func<WeightSpec, float[]> weights, IProgress<(long Done, long Total)>? progress,
        Gemma3ExportStyle style)
    {
        GraphProto graph = style switch
        {
            Gemma3ExportStyle.Serving => Gemma3Graph.Build(config),
            Gemma3ExportStyle.OnnxCommunity or Gemma3ExportStyle.GenAi => Gemma3GqaGraph.Build(config, style),
            Gemma3ExportStyle.Optimum => Gemma3OptimumGraph.Build(config),
            _ => throw new ArgumentOutOfRangeException(nameof(style)),
        };
        IReadOnlyList<WeightSpec> specs = Gemma3Weights.Specs(config);
        List<GeneratedWeight> generated = style is Gemma3ExportStyle.OnnxCommunity or Gemma3ExportStyle.GenAi
            ? [.. Gemma3GqaGraph.Weights(config, style, specs, weights)]
            : [.. specs.Select(spec => new GeneratedWeight(spec.Name, [.. spec.Shape.Select(d => (long)d)], () => weights(spec)))];
        long total = generated.Sum(weight => weight.ElementCount * sizeof(float));
        GeneratedModelFile.Write(path, graph, generated, Gemma3Graph.IrVersion, Gemma3Graph.Opset, written => progress?.Report((written, total)));
    }

    /// <summary>google/gemma-3's generation_config.json: both end ids, sampling at top-k 64, top-p 0.95.</summary>
    public static GenerationDefaults Generation(Gemma3Config config) =>
        new(config.BosTokenId, [config.EosTokenId, Text.GemmaVocabulary.EndOfTurnId], config.PadTokenId) { DoSample = true, TopK = 64, TopP = 0.95 };

    private static JsonObject GenerationConfig(GenerationDefaults generation) => new()
    {
        ["bos_token_id"] = generation.BosTokenId,
        ["eos_token_id"] = new JsonArray([.. generation.EosTokenIds.Select(id => JsonValue.Create(id))]),
        ["pad_token_id"] = generation.PadTokenId,
        ["cache_implementation"] = "hybrid",
        ["do_sample"] = generation.DoSample,
        ["top_k"] = generation.TopK,
        ["top_p"] = generation.TopP,
        ["transformers_version"] = "4.57.1",
    };

    private static void WriteJson(string path, JsonObject json) =>
        File.WriteAllText(path, json.ToJsonString(new JsonSerializerOptions { WriteIndented = true }) + "\n");
}
