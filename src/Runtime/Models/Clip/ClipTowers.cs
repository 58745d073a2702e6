using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Models.Clip;

/// <summary>
/// The ONNX sessions behind <see cref="ClipModel"/>. With the Optimum single file both
/// inputs are required on every run, so the unused tower gets a one-row placeholder (a
/// two-token text or a black image): ~1/B of the cost added per batch of B.
/// </summary>
internal sealed class ClipTowers : IDisposable
{
    private readonly InferenceSession _text;
    private readonly InferenceSession? _vision;
    private readonly ClipConfig _config;

    private ClipTowers(ClipConfig config, InferenceSession text, InferenceSession? vision)
    {
        _config = config;
        _text = text;
        _vision = vision;
    }

    public string Layout => _vision is null ? "single-file" : "split";

    public static ClipTowers Open(string folder, ClipConfig config, SessionOptions options)
    {
        string text = Path.Combine(folder, ClipModelWriter.TextFile), vision = Path.Combine(folder, ClipModelWriter.VisionFile);
        if (File.Exists(text) && File.Exists(vision))
        {
            InferenceSession textSession = Open(text, options, [ClipGraph.InputIds], ClipGraph.TextEmbeds);
            try
            {
                return new ClipTowers(config, textSession, Open(vision, options, [ClipGraph.PixelValues], ClipGraph.ImageEmbeds));
            }
            catch
            {
                textSession.Dispose();
                throw;
            }
        }

        string? single = new[] { Path.Combine(folder, "onnx", "model.onnx"), Path.Combine(folder, "model.onnx") }.FirstOrDefault(File.Exists);
        if (single is null)
        {
            throw new ModelLoadException(folder, $"no CLIP graph: expected {ClipModelWriter.TextFile} and {ClipModelWriter.VisionFile} (transformers.js) or model.onnx (Optimum)");
        }

        InferenceSession both = Open(single, options, [ClipGraph.InputIds, ClipGraph.PixelValues], ClipGraph.TextEmbeds);
        if (!both.OutputMetadata.ContainsKey(ClipGraph.ImageEmbeds))
        {
            both.Dispose();
            throw new ModelLoadException(single, $"has no '{ClipGraph.ImageEmbeds}' output");
        }

        return new ClipTowers(config, both, null);
    }

    private static InferenceSession Open(string path, SessionOptions options, string[] inputs, string output)
    {
        InferenceSession session;
        try
        {
            session = new InferenceSession(path, options);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(path, $"ONNX Runtime cannot load it: {e.Message}", e);
        }

        string? missing = inputs.FirstOrDefault(name => !session.InputMetadata.ContainsKey(name));
        if (missing is not null || !session.OutputMetadata.ContainsKey(output))
        {
            session.Dispose();
            throw new ModelLoadException(path, $"expected input(s) {string.Join(", ", inputs)} and output {output}; it has inputs {string.Join(", ", session.InputMetadata.Keys)}");
        }

        return session;
    }

    public float[] RunText(long[] ids, long[] mask, int batch, int length)
    {
        var feeds = new List<(string, OrtValue)> { Ids(ids, batch, length) };
        AddMask(_text, feeds, mask, batch, length);
        if (_vision is null)
        {
            feeds.Add(Pixels(new float[PixelsPerImage], 1));
        }

        return Run(_text, ClipGraph.TextEmbeds, feeds);
    }

    public float[] RunVision(float[] pixels, int batch)
    {
        var feeds = new List<(string, OrtValue)> { Pixels(pixels, batch) };
        if (_vision is not null)
        {
            return Run(_vision, ClipGraph.ImageEmbeds, feeds);
        }

        feeds.Add(Ids([_config.BosTokenId, _config.EosTokenId], 1, 2));
        AddMask(_text, feeds, [1, 1], 1, 2);
        return Run(_text, ClipGraph.ImageEmbeds, feeds);
    }

    /// <summary>Optimum exports may take <c>attention_mask</c>; ours and transformers.js's do not.</summary>
    private static void AddMask(InferenceSession session, List<(string, OrtValue)> feeds, long[] mask, int batch, int length)
    {
        if (session.InputMetadata.ContainsKey(AttentionMask))
        {
            feeds.Add((AttentionMask, OrtValue.CreateTensorValueFromMemory(mask, [batch, length])));
        }
    }

    private const string AttentionMask = "attention_mask";

    private int PixelsPerImage => ClipConfig.NumChannels * _config.ImageSize * _config.ImageSize;

    private static (string, OrtValue) Ids(long[] ids, int batch, int length) =>
        (ClipGraph.InputIds, OrtValue.CreateTensorValueFromMemory(ids, [batch, length]));

    private (string, OrtValue) Pixels(float[] pixels, int batch) =>
        (ClipGraph.PixelValues, OrtValue.CreateTensorValueFromMemory(pixels, [batch, ClipConfig.NumChannels, _config.ImageSize, _config.ImageSize]));

    private static float[] Run(InferenceSession session, string output, List<(string Name, OrtValue Value)> inputs)
    {
        try
        {
            using var runOptions = new RunOptions();
            using IDisposableReadOnlyCollection<OrtValue> results = session.Run(runOptions,
                inputs.Select(i => i.Name).ToArray(), inputs.Select(i => i.Value).ToArray(), [output]);
            return results[0].GetTensorDataAsSpan<float>().ToArray();
        }
        finally
        {
            foreach (var (_, value) in inputs)
            {
                value.Dispose();
            }
        }
    }

    public void Dispose()
    {
        _text.Dispose();
        _vision?.Dispose();
    }
}
