using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Text;
using Serving.Runtime.Vision;

namespace Serving.Runtime.Models.Clip;

/// <summary>
/// A loaded CLIP folder: tokenizer, image processor and the towers' sessions. Accepts the
/// transformers.js split layout (<c>onnx/text_model.onnx</c> + <c>onnx/vision_model.onnx</c>)
/// and the Optimum single file (<c>model.onnx</c> or <c>onnx/model.onnx</c> with
/// <c>input_ids</c> and <c>pixel_values</c>). Embeddings come back L2-normalised.
/// Thread-safe: ONNX Runtime sessions may run concurrently.
/// </summary>
public sealed class ClipModel : IDisposable
{
    private readonly ClipTowers _towers;

    private ClipModel(string folder, ClipConfig config, ClipTokenizer tokenizer, ClipImageProcessor processor, ClipTowers towers)
    {
        Folder = folder;
        Config = config;
        Tokenizer = tokenizer;
        Processor = processor;
        _towers = towers;
    }

    public string Folder { get; }

    public ClipConfig Config { get; }

    public ClipTokenizer Tokenizer { get; }

    public ClipImageProcessor Processor { get; }

    /// <summary>Length of every embedding (projection_dim).</summary>
    public int Dimension => Config.ProjectionDim;

    /// <summary>Which layout was found: "split" or "single-file".</summary>
    public string Layout => _towers.Layout;

    public static ClipModel Load(string folder, SessionOptions? options = null)
    {
        ClipConfig config = ClipConfig.Load(folder);
        ClipTokenizer tokenizer = ClipTokenizer.Load(folder, config.MaxPositionEmbeddings);
        ClipImageProcessor processor = ClipImageProcessor.Load(folder);
        if (processor.CropSize != config.ImageSize)
        {
            throw new ModelLoadException(Path.Combine(folder, "preprocessor_config.json"),
                $"crop_size {processor.CropSize} differs from the vision tower's image_size {config.ImageSize}");
        }

        return new ClipModel(folder, config, tokenizer, processor, ClipTowers.Open(folder, config, options ?? new SessionOptions()));
    }

    public float[][] EmbedTexts(IReadOnlyList<string> texts)
    {
        ArgumentOutOfRangeException.ThrowIfZero(texts.Count);
        (long[] ids, long[] mask, int length) = Tokenizer.EncodeBatch(texts);
        return Normalised(_towers.RunText(ids, mask, texts.Count, length), texts.Count);
    }

    public float[][] EmbedImages(IReadOnlyList<RgbImage> images)
    {
        ArgumentOutOfRangeException.ThrowIfZero(images.Count);
        int size = Processor.ValuesPerImage;
        var pixels = new float[images.Count * size];
        for (int i = 0; i < images.Count; i++)
        {
            Processor.Process(images[i], pixels.AsSpan(i * size, size));
        }

        return EmbedPixels(pixels, images.Count);
    }

    /// <summary>Embeds preprocessed <c>[count, 3, size, size]</c> pixels.</summary>
    public float[][] EmbedPixels(float[] pixels, int count) => Normalised(_towers.RunVision(pixels, count), count);

    private float[][] Normalised(float[] flat, int count)
    {
        var rows = new float[count][];
        for (int r = 0; r < count; r++)
        {
            rows[r] = flat.AsSpan(r * Dimension, Dimension).ToArray();
            float norm = System.Numerics.Tensors.TensorPrimitives.Norm<float>(rows[r]);
            if (norm > 0)
            {
                System.Numerics.Tensors.TensorPrimitives.Divide(rows[r], norm, rows[r]);
            }
        }

        return rows;
    }

    public void Dispose() => _towers.Dispose();
}
