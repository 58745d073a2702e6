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
/// before any pixel memory is allocated. When the caller needs far fewer pixels (CLIP needs a
/// 224 shortest side), JPEG and WebP are scaled by their codecs and what is still over twice that
/// is averaged in integer blocks as rows arrive (Pillow's <c>reduce</c>, what its
/// <c>resize(reducing_gap=2)</c> does first): a 5000×5000 PNG becomes 455×455 before the bicubic
/// resample, instead of 25 M pixels going through it. JPEG and BMP decode a row at a time (a
/// truncated file fails at its first missing row); the rest decode whole into native memory that
/// is freed before returning.
/// </summary>
public static class ImageDecoder
{
    /// <summary>
    /// Longest side over shortest side. Past this a shortest-edge resize explodes the long side
    /// (1 × 25 M pixels at 224 would be 5.6 G pixels long); real panoramas stay under ~10:1.
    /// </summary>
    public const int MaxAspectRatio = 100;

    /// <summary>
    /// A block reduction leaves the shortest side at least this many times the size asked for, so
    /// the bicubic resample that follows still does the last factor of 2 or more (Pillow's reducing_gap).
    /// </summary>
    public const int ReducingGap = 2;

    /// <summary>Width and height from the header, without decoding a pixel.</summary>
    public static (int Width, int Height) ReadSize(byte[] data)
    {
        using SKCodec codec = Open(data);
        return (codec.Info.Width, codec.Info.Height);
    }

    /// <summary>
    /// The image at full size, or, when <paramref name="minShortestSide"/> &gt; 0, reduced by the largest
    /// integer factor that keeps its shortest side at least <see cref="ReducingGap"/> × that
    /// (images under twice that size are decoded as they are).
    /// </summary>
    public static RgbImage Decode(byte[] data, long maxPixels, int minShortestSide = 0)
    {
        using SKCodec codec = Open(data);
        SKImageInfo header = codec.Info;
        CheckSize(header.Width, header.Height, maxPixels);
        int wanted = ReducingGap * Math.Max(0, minShortestSide);
        SKImageInfo info = DecodeInfo(codec, wanted);
        int factor = wanted > 0 ? Math.Max(1, Math.Min(info.Width, info.Height) / wanted) : 1;
        var reducer = new RowReducer(info.Width, info.Height, factor);
        if (codec.StartScanlineDecode(info) == SKCodecResult.Success)
        {
            DecodeRows(codec, info, reducer);
        }
        else
        {
            DecodeWhole(codec, info, reducer); // PNG, WebP and GIF: Skia has no scanline decoder for them
        }

        return Orient(reducer.Result(), codec.EncodedOrigin);
    }

    /// <summary>
    /// The size to decode at: the codec's own scaling where it has one (JPEG in eighths, WebP any
    /// size) when the image is at least twice the size wanted, else the full size.
    /// </summary>
    private static SKImageInfo DecodeInfo(SKCodec codec, int wanted)
    {
        int width = codec.Info.Width, height = codec.Info.Height, shortest = Math.Min(width, height);
        if (wanted > 0 && shortest >= 2 * wanted)
        {
            SKSizeI scaled = codec.GetScaledDimensions((float)wanted / shortest);
            // The codec rounds each side; a result past the aspect limit (a 100:1 image rounded) is not used.
            if (Math.Min(scaled.Width, scaled.Height) >= wanted && scaled.Width <= width && scaled.Height <= height
                && Math.Max(scaled.Width, scaled.Height) <= (long)MaxAspectRatio * Math.Min(scaled.Width, scaled.Height))
            {
                (width, height) = (scaled.Width, scaled.Height);
            }
        }

        return new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
    }

    private static SKCodec Open(byte[] data)
    {
        // The codec owns the stream and disposes it with itself.
        SKCodec? codec = SKCodec.Create(new SKMemoryStream(data), out SKCodecResult created);
        return codec ?? throw new ImageDecodeException($"not a supported image (PNG, JPEG, WebP, GIF or BMP): {created}");
    }

    private static void DecodeRows(SKCodec codec, SKImageInfo info, RowReducer reducer)
    {
        var row = new byte[info.RowBytes];
        GCHandle pin = GCHandle.Alloc(row, GCHandleType.Pinned);
        try
        {
            for (int line = 0; line < info.Height; line++)
            {
                if (codec.GetScanlines(pin.AddrOfPinnedObject(), 1, info.RowBytes) != 1)
                {
                    throw new ImageDecodeException("the image data is truncated");
                }

                reducer.Add(codec.GetOutputScanline(line), row);
            }
        }
        finally
        {
            pin.Free();
        }
    }

    /// <summary>
    /// Decodes into native memory, freed before returning: the full-size pixels of a large PNG
    /// (100 MB at 25 M pixels) go back at once instead of waiting on the large-object heap.
    /// </summary>
    private static void DecodeWhole(SKCodec codec, SKImageInfo info, RowReducer reducer)
    {
        IntPtr pixels = Marshal.AllocHGlobal((IntPtr)info.BytesSize64);
        try
        {
            SKCodecResult result = codec.GetPixels(info, pixels);
            if (result != SKCodecResult.Success)
            {
                throw new ImageDecodeException(result == SKCodecResult.IncompleteInput
                    ? "the image data is truncated"
                    : $"the image could not be decoded: {result}");
            }

            var row = new byte[info.RowBytes];
            for (int y = 0; y < info.Height; y++)
            {
                Marshal.Copy(pixels + (nint)((long)y * info.RowBytes), row, 0, row.Length);
                reducer.Add(y, row);
            }
        }
        finally
        {
            Marshal.FreeHGlobal(pixels);
        }
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
