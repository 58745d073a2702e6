using System.Runtime.InteropServices;
using SkiaSharp;

namespace Serving.Runtime.Vision;

/// <summary>Decoded pixels, 3 bytes per pixel (R, G, B), row-major.</summary>
public sealed record RgbImage(int Width, int Height, byte[] Pixels);

/// <summary>The bytes are not an image we can use; the message says why, for a 400 answer.</summary>
public sealed class ImageDecodeException(string message) : Exception(message);

/// <summary>
/// Decodes PNG, JPEG, WebP, GIF (first frame) and BMP with SkiaSharp into RGB: palette and
/// grey images expand, alpha is dropped (as PIL's and transformers.js's <c>convert("RGB")</c>
/// do), and the EXIF orientation is applied. The pixel limit is checked from the header,
/// before any pixel memory is allocated.
/// </summary>
public static class ImageDecoder
{
    /// <summary>
    /// Longest side over shortest side. Past this a shortest-edge resize explodes the long side
    /// (1 × 25 M pixels at 224 would be 5.6 G pixels long); real panoramas stay under ~10:1.
    /// </summary>
    public const int MaxAspectRatio = 100;

    public static RgbImage Decode(byte[] data, long maxPixels)
    {
        // The codec owns the stream and disposes it with itself.
        using SKCodec? codec = SKCodec.Create(new SKMemoryStream(data), out SKCodecResult created);
        if (codec is null)
        {
            throw new ImageDecodeException($"not a supported image (PNG, JPEG, WebP, GIF or BMP): {created}");
        }

        SKImageInfo header = codec.Info;
        CheckSize(header.Width, header.Height, maxPixels);

        var info = new SKImageInfo(header.Width, header.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        var rgba = new byte[info.BytesSize];
        SKCodecResult result;
        GCHandle pin = GCHandle.Alloc(rgba, GCHandleType.Pinned);
        try
        {
            result = codec.GetPixels(info, pin.AddrOfPinnedObject());
        }
        finally
        {
            pin.Free();
        }

        if (result != SKCodecResult.Success)
        {
            throw new ImageDecodeException(result == SKCodecResult.IncompleteInput
                ? "the image data is truncated"
                : $"the image could not be decoded: {result}");
        }

        return Orient(ToRgb(rgba, header.Width, header.Height), codec.EncodedOrigin);
    }

    /// <summary>From the header alone: a decompression bomb is refused before its pixels are allocated.</summary>
    private static void CheckSize(int width, int height, long maxPixels)
    {
        long pixels = (long)width * height;
        if (width <= 0 || height <= 0 || pixels > maxPixels)
        {
            throw new ImageDecodeException($"the image is {width}×{height} = {pixels} pixels; the limit is {maxPixels}");
        }

        if (Math.Max(width, height) > (long)MaxAspectRatio * Math.Min(width, height))
        {
            throw new ImageDecodeException($"the image is {width}×{height}; sides may differ by at most {MaxAspectRatio}:1");
        }
    }

    private static RgbImage ToRgb(byte[] rgba, int width, int height)
    {
        var rgb = new byte[width * height * 3];
        for (int p = 0, q = 0; p < rgba.Length; p += 4, q += 3)
        {
            rgb[q] = rgba[p];
            rgb[q + 1] = rgba[p + 1];
            rgb[q + 2] = rgba[p + 2];
        }

        return new RgbImage(width, height, rgb);
    }

    /// <summary>Turns stored pixels upright: EXIF orientations 2–8 mirror and/or rotate.</summary>
    internal static RgbImage Orient(RgbImage image, SKEncodedOrigin origin)
    {
        if (origin == SKEncodedOrigin.TopLeft)
        {
            return image;
        }

        bool swap = origin is SKEncodedOrigin.LeftTop or SKEncodedOrigin.RightTop or SKEncodedOrigin.RightBottom or SKEncodedOrigin.LeftBottom;
        int w = image.Width, h = image.Height, outW = swap ? h : w, outH = swap ? w : h;
        var pixels = new byte[image.Pixels.Length];
        for (int y = 0; y < outH; y++)
        {
            for (int x = 0; x < outW; x++)
            {
                (int sx, int sy) = origin switch
                {
                    SKEncodedOrigin.TopRight => (w - 1 - x, y),
                    SKEncodedOrigin.BottomRight => (w - 1 - x, h - 1 - y),
                    SKEncodedOrigin.BottomLeft => (x, h - 1 - y),
                    SKEncodedOrigin.LeftTop => (y, x),
                    SKEncodedOrigin.RightTop => (y, h - 1 - x),
                    SKEncodedOrigin.RightBottom => (w - 1 - y, h - 1 - x),
                    _ => (w - 1 - y, x), // LeftBottom
                };
                Buffer.BlockCopy(image.Pixels, (sy * w + sx) * 3, pixels, (y * outW + x) * 3, 3);
            }
        }

        return new RgbImage(outW, outH, pixels);
    }
}
