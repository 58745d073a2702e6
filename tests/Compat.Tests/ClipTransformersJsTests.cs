using System.Text.Json.Nodes;
using Serving.Runtime.Models.Clip;
using Serving.Runtime.Vision;
using SkiaSharp;

namespace Serving.Compat.Tests;

/// <summary>
/// transformers.js 4.3.1 loads our clip-tiny folder offline with its own tokenizer, image
/// processor and CLIP classes: the same token ids for tricky strings, preprocessed pixels
/// within 0.03, and embeddings with cosine ≥ 0.999.
/// </summary>
public sealed class ClipTransformersJsTests : IDisposable
{
    private static readonly string[] TrickyStrings =
    [
        "a photo of a cat", "Hello, world!!!", "  two leading spaces and trailing  ", "don't, can't, it's, we'll, they're",
        "naïve café — résumé", "emoji 🎉👍🏽 and 中文字符", "tabs\tand\nnew lines\r\n", "12345 + 67890 = 80235", "UPPER lower MiXeD",
        string.Join(' ', Enumerable.Range(0, 200).Select(i => (string[])["the", "quick", "brown", "fox", "jumps", "over", "lazy", "dogs"] is var w ? w[i % w.Length] : "")),
    ];

    private readonly string _root = Path.Combine(Path.GetTempPath(), "serving-compat", Guid.NewGuid().ToString("N"));
    private readonly string _folder;

    public ClipTransformersJsTests()
    {
        _folder = Path.Combine(_root, "clip-tiny");
        ClipModelWriter.WriteRandom(_folder, ClipPresets.Tiny, seed: 9);
    }

    [Fact]
    public void TransformersJsAgreesOnTokensPixelsAndEmbeddings()
    {
        string[] images =
        [
            WriteImage("wide.png", 640, 400, SKEncodedImageFormat.Png),
            WriteImage("tall.jpg", 300, 500, SKEncodedImageFormat.Jpeg),
            WriteImage("small.png", 150, 120, SKEncodedImageFormat.Png),
            WriteImage("small.webp", 150, 120, SKEncodedImageFormat.Webp),
        ];
        var request = new JsonObject
        {
            ["model_dir"] = _folder,
            ["encode"] = new JsonArray([.. TrickyStrings.Select(s => JsonValue.Create(s))]),
            ["images"] = new JsonArray([.. images.Select(s => JsonValue.Create(s))]),
        };
        JsonObject peer = NodePeer.Run("clip-check.mjs", request, TimeSpan.FromMinutes(3));
        using var model = ClipModel.Load(_folder);

        for (int i = 0; i < TrickyStrings.Length; i++)
        {
            int[] theirs = [.. Floats(peer["encode"]![i]!).Select(v => (int)v)], ours = model.Tokenizer.Encode(TrickyStrings[i]);
            if (theirs.Length < 77)
            {
                Assert.Equal(theirs, ours);
                AssertCosine(Floats(peer["text_embeds"]![i]!), model.EmbedTexts([TrickyStrings[i]])[0]);
                continue;
            }

            // transformers.js 4.3.1 truncates after adding the special tokens, so it cuts the end
            // token (and then pools at position 0); Hugging Face Python and we keep it.
            Assert.Equal(theirs[..76], ours[..76]);
            Assert.Equal(model.Tokenizer.EndOfTextId, ours[76]);
        }

        for (int i = 0; i < images.Length; i++)
        {
            RgbImage image = ImageDecoder.Decode(File.ReadAllBytes(images[i]), maxPixels: 1 << 24);
            var pixels = new float[model.Processor.ValuesPerImage];
            model.Processor.Process(image, pixels);
            float[] theirs = Floats(peer["pixels"]![i]!);
            float worst = LargestInteriorDifference(pixels, theirs, model.Processor.CropSize);
            // JPEG and WebP decoders differ in chroma upsampling (measured up to 0.26): their
            // pixels are only compared through the embeddings.
            if (images[i].EndsWith(".png", StringComparison.Ordinal))
            {
                Assert.True(worst <= PixelTolerance, $"{images[i]}: largest pixel difference {worst}");
            }
            AssertCosine(Floats(peer["image_embeds"]![i]!), model.EmbedImages([image])[0]);
        }
    }

    /// <summary>
    /// A smooth picture (gradients and slow waves). Detail matters when shrinking: we filter
    /// like Pillow (Hugging Face Python), transformers.js in Node samples without widening the
    /// filter; with waves of period 2π·37 px instead of 2π·80 px the 640×400 image differed by
    /// 0.043 (3 grey levels of blue).
    /// </summary>
    private string WriteImage(string name, int width, int height, SKEncodedImageFormat format)
    {
        using var bitmap = new SKBitmap(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                byte r = (byte)(255.0 * x / width), g = (byte)(255.0 * y / height);
                byte b = (byte)(127 + 120 * Math.Sin(x / 80.0) * Math.Cos(y / 60.0));
                bitmap.SetPixel(x, y, new SKColor(r, g, b));
            }
        }

        string path = Path.Combine(_root, name);
        using SKData data = bitmap.Encode(format, 95);
        File.WriteAllBytes(path, data.ToArray());
        return path;
    }

    /// <summary>
    /// Largest difference away from the crop's frame of <see cref="Frame"/> pixels:
    /// transformers.js resizes with sharp's affine, which blends the image's last rows and
    /// columns with black (measured: up to 1.8 there on an upscaled image).
    /// </summary>
    /// <summary>Bicubic support (2 source pixels) at up to 2× enlargement.</summary>
    private const int Frame = 4;

    /// <summary>
    /// Two grey levels of the green channel (2 / 255 / 0.2613 = 0.03001): the samplers place
    /// pixel centres differently by a fraction of a pixel, and each rounds to bytes.
    /// </summary>
    private const float PixelTolerance = 0.0301f;

    private static float LargestInteriorDifference(float[] ours, float[] theirs, int size)
    {
        float worst = 0;
        for (int channel = 0; channel < 3; channel++)
        {
            for (int y = Frame; y < size - Frame; y++)
            {
                for (int x = Frame; x < size - Frame; x++)
                {
                    int k = (channel * size + y) * size + x;
                    worst = Math.Max(worst, Math.Abs(ours[k] - theirs[k]));
                }
            }
        }

        return worst;
    }

    private static float[] Floats(JsonNode node) => [.. node.AsArray().Select(v => v!.GetValue<float>())];

    private static void AssertCosine(float[] theirs, float[] ours)
    {
        double dot = 0, norm = 0;
        for (int i = 0; i < ours.Length; i++)
        {
            dot += theirs[i] * ours[i];
            norm += theirs[i] * theirs[i];
        }

        double cosine = dot / Math.Sqrt(norm); // ours is unit length
        Assert.True(cosine >= 0.999, $"cosine {cosine:F5}");
    }

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
