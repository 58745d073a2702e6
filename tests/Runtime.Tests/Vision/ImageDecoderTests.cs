using Serving.Runtime.Vision;
using SkiaSharp;

namespace Serving.Runtime.Tests.Vision;

public sealed class ImageDecoderTests
{
    /// <summary>A w×h image whose pixel (x, y) is (x·10, y·10, 200), encoded as <paramref name="format"/>.</summary>
    public static byte[] Encode(int width, int height, SKEncodedImageFormat format = SKEncodedImageFormat.Png, SKColorType colorType = SKColorType.Rgba8888)
    {
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, colorType, SKAlphaType.Unpremul));
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                bitmap.SetPixel(x, y, new SKColor((byte)(x * 10), (byte)(y * 10), 200, 128));
            }
        }

        using SKData data = bitmap.Encode(format, 100);
        return data.ToArray();
    }

    [Fact]
    public void DecodesPngToRgbDroppingAlpha()
    {
        RgbImage image = ImageDecoder.Decode(Encode(3, 2), maxPixels: 100);
        Assert.Equal((3, 2), (image.Width, image.Height));
        int pixel = (1 * 3 + 2) * 3; // x = 2, y = 1
        Assert.Equal([20, 10, 200], image.Pixels[pixel..(pixel + 3)]);
    }

    [Theory]
    [InlineData(SKEncodedImageFormat.Jpeg)]
    [InlineData(SKEncodedImageFormat.Webp)]
    public void DecodesLossyFormatsClosely(SKEncodedImageFormat format)
    {
        RgbImage image = ImageDecoder.Decode(Encode(16, 16, format), maxPixels: 1000);
        Assert.Equal(16 * 16 * 3, image.Pixels.Length);
        Assert.InRange(image.Pixels[(5 * 16 + 5) * 3 + 2], 185, 215);
    }

    [Fact]
    public void DecodesAPaletteGif()
    {
        // 1×1 GIF89a, a two-colour palette (red, blue), pixel index 0; LZW codes clear, 0, end.
        byte[] gif = [.. "GIF89a"u8, 1, 0, 1, 0, 0x80, 0, 0, 0xFF, 0, 0, 0, 0, 0xFF,
            0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0, 2, 2, 0x44, 0x01, 0, 0x3B];
        RgbImage image = ImageDecoder.Decode(gif, maxPixels: 10);
        Assert.Equal([255, 0, 0], image.Pixels);
    }

    [Fact]
    public void DecodesABottomUpBmp()
    {
        // 2×2, 24-bit BGR rows stored bottom-up, each padded to 8 bytes.
        byte[] pixels = [0, 0, 255, 0, 255, 0, 0, 0, /* bottom: red, green */ 255, 0, 0, 255, 255, 255, 0, 0 /* top: blue, white */];
        byte[] header = new byte[54];
        "BM"u8.CopyTo(header);
        BitConverter.GetBytes(54 + pixels.Length).CopyTo(header, 2);
        BitConverter.GetBytes(54).CopyTo(header, 10);
        BitConverter.GetBytes(40).CopyTo(header, 14);
        BitConverter.GetBytes(2).CopyTo(header, 18);
        BitConverter.GetBytes(2).CopyTo(header, 22);
        BitConverter.GetBytes((short)1).CopyTo(header, 26);
        BitConverter.GetBytes((short)24).CopyTo(header, 28);
        RgbImage image = ImageDecoder.Decode([.. header, .. pixels], maxPixels: 10);
        Assert.Equal([0, 0, 255, 255, 255, 255, 255, 0, 0, 0, 255, 0], image.Pixels);
    }

    [Fact]
    public void GreyImagesBecomeThreeEqualChannels()
    {
        RgbImage image = ImageDecoder.Decode(Encode(4, 4, colorType: SKColorType.Gray8), maxPixels: 100);
        for (int p = 0; p < 16; p++)
        {
            Assert.Equal(image.Pixels[p * 3], image.Pixels[p * 3 + 1]);
            Assert.Equal(image.Pixels[p * 3], image.Pixels[p * 3 + 2]);
        }
    }

    [Fact]
    public void RejectsBytesThatAreNotAnImage()
    {
        var error = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode("hello, not an image"u8.ToArray(), 100));
        Assert.Contains("not a supported image", error.Message);
    }

    [Fact]
    public void RejectsATruncatedImage()
    {
        byte[] png = Encode(64, 64);
        var error = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(png[..(png.Length / 2)], 100_000));
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void RejectsTooManyPixelsFromTheHeader()
    {
        // Only the first 64 bytes: the header says 64×64, and no pixel data is needed to refuse it.
        byte[] header = Encode(64, 64)[..64];
        var error = Assert.Throws<ImageDecodeException>(() => ImageDecoder.Decode(header, maxPixels: 4000));
        Assert.Contains("4096 pixels", error.Message);
    }

    [Theory]
    [InlineData(SKEncodedOrigin.RightTop, 2, 3, 1, 0)]   // EXIF 6: rotate 90° clockwise to display
    [InlineData(SKEncodedOrigin.LeftBottom, 2, 3, 0, 2)] // EXIF 8: rotate 90° counter-clockwise to display
    [InlineData(SKEncodedOrigin.BottomRight, 3, 2, 2, 1)] // EXIF 3: rotate 180°
    [InlineData(SKEncodedOrigin.TopRight, 3, 2, 2, 0)]    // EXIF 2: mirror
    public void OrientationMovesTheTopLeftPixel(SKEncodedOrigin origin, int width, int height, int x, int y)
    {
        // 3×2 stored image, only the stored top-left pixel is white.
        var pixels = new byte[3 * 2 * 3];
        pixels[0] = pixels[1] = pixels[2] = 255;
        RgbImage upright = ImageDecoder.Orient(new RgbImage(3, 2, pixels), origin);
        Assert.Equal((width, height), (upright.Width, upright.Height));
        Assert.Equal(255, upright.Pixels[(y * width + x) * 3]);
    }
}
