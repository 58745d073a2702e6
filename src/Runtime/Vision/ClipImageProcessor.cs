using System.Text.Json;
using Serving.Runtime.Models;

namespace Serving.Runtime.Vision;

/// <summary>
/// CLIPImageProcessor from <c>preprocessor_config.json</c>: shortest edge to <c>size</c>
/// (bicubic), centre crop to <c>crop_size</c>, rescale, normalise, channels first.
/// </summary>
public sealed class ClipImageProcessor
{
    private readonly float[] _mean, _std;
    private readonly float _rescale;

    private ClipImageProcessor(int shortestEdge, int cropSize, float[] mean, float[] std, float rescale)
    {
        ShortestEdge = shortestEdge;
        CropSize = cropSize;
        _mean = mean;
        _std = std;
        _rescale = rescale;
    }

    public int ShortestEdge { get; }

    public int CropSize { get; }

    /// <summary>Floats per image: 3 × crop².</summary>
    public int ValuesPerImage => 3 * CropSize * CropSize;

    public static ClipImageProcessor Create(int size, float[] mean, float[] std) => new(size, size, mean, std, 1f / 255);

    public static ClipImageProcessor Load(string folder)
    {
        string path = Path.Combine(folder, "preprocessor_config.json");
        if (!File.Exists(path))
        {
            throw new ModelLoadException(path, "not found");
        }

        try
        {
            using JsonDocument doc = JsonDocument.Parse(File.ReadAllBytes(path));
            JsonElement root = doc.RootElement;
            int shortest = root.GetProperty("size") is { ValueKind: JsonValueKind.Object } size ? size.GetProperty("shortest_edge").GetInt32() : root.GetProperty("size").GetInt32();
            int crop = root.GetProperty("crop_size") is { ValueKind: JsonValueKind.Object } c ? c.GetProperty("height").GetInt32() : root.GetProperty("crop_size").GetInt32();
            float[] mean = [.. root.GetProperty("image_mean").EnumerateArray().Select(v => v.GetSingle())];
            float[] std = [.. root.GetProperty("image_std").EnumerateArray().Select(v => v.GetSingle())];
            float rescale = root.TryGetProperty("rescale_factor", out JsonElement r) ? r.GetSingle() : 1f / 255;
            if (mean.Length != 3 || std.Length != 3 || shortest <= 0 || crop <= 0)
            {
                throw new ModelLoadException(path, "image_mean and image_std need 3 values, size and crop_size must be positive");
            }

            return new ClipImageProcessor(shortest, crop, mean, std, rescale);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException)
        {
            throw new ModelLoadException(path, $"unreadable CLIP preprocessing settings: {e.Message}", e);
        }
    }

    /// <summary>Writes <c>[3, crop, crop]</c> floats for <paramref name="image"/> into <paramref name="destination"/>.</summary>
    public void Process(RgbImage image, Span<float> destination)
    {
        if (destination.Length != ValuesPerImage)
        {
            throw new ArgumentException($"destination holds {destination.Length} floats, expected {ValuesPerImage}", nameof(destination));
        }

        if (Math.Max(image.Width, image.Height) > (long)ImageDecoder.MaxAspectRatio * Math.Min(image.Width, image.Height))
        {
            throw new ArgumentException($"a {image.Width}×{image.Height} image is past the {ImageDecoder.MaxAspectRatio}:1 aspect ratio", nameof(image));
        }

        // transformers.js and Hugging Face: floor(side × target / shortest side).
        double factor = (double)ShortestEdge / Math.Min(image.Width, image.Height);
        int width = Math.Max(CropSize, (int)Math.Floor(image.Width * factor + 1e-9));
        int height = Math.Max(CropSize, (int)Math.Floor(image.Height * factor + 1e-9));
        int left = (width - CropSize) / 2, top = (height - CropSize) / 2, plane = CropSize * CropSize;
        RgbImage crop = BicubicResampler.ResizeWindow(image, width, height, left, top, CropSize, CropSize);
        for (int y = 0; y < CropSize; y++)
        {
            for (int x = 0; x < CropSize; x++)
            {
                int source = (y * CropSize + x) * 3;
                for (int channel = 0; channel < 3; channel++)
                {
                    destination[channel * plane + y * CropSize + x] = (crop.Pixels[source + channel] * _rescale - _mean[channel]) / _std[channel];
                }
            }
        }
    }
}
