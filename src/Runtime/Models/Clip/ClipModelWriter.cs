using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Text;

namespace Serving.Runtime.Models.Clip;

/// <summary>
/// Writes a CLIP folder in the transformers.js split layout: <c>onnx/text_model.onnx</c>,
/// <c>onnx/vision_model.onnx</c> (weights in <c>…onnx_data</c> beside each), <c>config.json</c>,
/// <c>preprocessor_config.json</c> and the tokenizer files.
/// </summary>
public static class ClipModelWriter
{
    public const string TextFile = "onnx/text_model.onnx";
    public const string VisionFile = "onnx/vision_model.onnx";

    /// <summary>OpenAI CLIP's normalisation (REFERENCE §6).</summary>
    public static readonly float[] ImageMean = [0.48145466f, 0.4578275f, 0.40821073f];
    public static readonly float[] ImageStd = [0.26862954f, 0.26130258f, 0.27577711f];

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    public static void Write(string folder, ClipConfig config, Func<ClipWeight, float[]> weights, IProgress<(long Done, long Total)>? progress = null)
    {
        config.Validate();
        Directory.CreateDirectory(Path.Combine(folder, "onnx"));
        IReadOnlyList<ClipWeight> specs = ClipWeights.Specs(config);
        long total = specs.Sum(spec => spec.ElementCount * sizeof(float)), done = 0;
        foreach (var (tower, file, graph) in new[]
        {
            (ClipTower.Text, TextFile, ClipGraph.BuildText(config)),
            (ClipTower.Vision, VisionFile, ClipGraph.BuildVision(config)),
        })
        {
            done += WriteOnnx(Path.Combine(folder, file), graph, specs.Where(s => s.Tower == tower), weights, written => progress?.Report((done + written, total)));
        }

        Save(Path.Combine(folder, "config.json"), config.ToJson());
        Save(Path.Combine(folder, "preprocessor_config.json"), PreprocessorConfig(config));
        ClipTokenizerWriter.Write(folder, ClipVocabulary.Build(config.VocabSize));
    }

    public static void WriteRandom(string folder, ClipConfig config, ulong seed, IProgress<(long Done, long Total)>? progress = null) =>
        Write(folder, config, spec => ClipWeights.Random(spec, seed), progress);

    private static long WriteOnnx(string path, GraphProto graph, IEnumerable<ClipWeight> specs, Func<ClipWeight, float[]> weights, Action<long> written) =>
        GeneratedModelFile.Write(path, graph,
            specs.Select(spec => new GeneratedWeight(spec.Name, [.. spec.Shape.Select(d => (long)d)], () => weights(spec))),
            ClipGraph.IrVersion, ClipGraph.Opset, written);

    /// <summary>CLIPImageProcessor: shortest edge to the image size (bicubic, resample 3), centre crop, 1/255, normalise.</summary>
    private static JsonObject PreprocessorConfig(ClipConfig config) => new()
    {
        ["crop_size"] = new JsonObject { ["height"] = config.ImageSize, ["width"] = config.ImageSize },
        ["do_center_crop"] = true,
        ["do_convert_rgb"] = true,
        ["do_normalize"] = true,
        ["do_rescale"] = true,
        ["do_resize"] = true,
        ["feature_extractor_type"] = "CLIPFeatureExtractor",
        ["image_mean"] = new JsonArray([.. ImageMean.Select(v => (JsonNode)v)]),
        ["image_processor_type"] = "CLIPImageProcessor",
        ["image_std"] = new JsonArray([.. ImageStd.Select(v => (JsonNode)v)]),
        ["processor_class"] = "CLIPProcessor",
        ["resample"] = 3,
        ["rescale_factor"] = 1.0 / 255,
        ["size"] = new JsonObject { ["shortest_edge"] = config.ImageSize },
    };

    private static void Save(string path, JsonObject json) => File.WriteAllText(path, json.ToJsonString(Indented) + "\n");
}
