using Serving.Runtime.Models.Clip;
using Serving.Runtime.Vision;

namespace Serving.Runtime.Tests.Vision;

public sealed class ClipImageProcessorTests
{
    private static readonly ClipImageProcessor Processor = ClipImageProcessor.Create(8, ClipModelWriter.ImageMean, ClipModelWriter.ImageStd);

    [Fact]
    public void AConstantImageNormalisesToTheConstant()
    {
        var image = new RgbImage(20, 12, [.. Enumerable.Repeat((byte)128, 20 * 12 * 3)]);
        var values = new float[Processor.ValuesPerImage];
        Processor.Process(image, values);
        for (int channel = 0; channel < 3; channel++)
        {
            float expected = (128 / 255f - ClipModelWriter.ImageMean[channel]) / ClipModelWriter.ImageStd[channel];
            Assert.All(values[(channel * 64)..((channel + 1) * 64)], v => Assert.Equal(expected, v, 1e-5f));
        }
    }

    [Fact]
    public void CropsTheCentreOfTheLongSide()
    {
        // 24×8, left third black, middle white, right black: the shortest edge is already 8,
        // so the centre 8×8 crop is the white third.
        var pixels = new byte[24 * 8 * 3];
        for (int y = 0; y < 8; y++)
        {
            for (int x = 8; x < 16; x++)
            {
                pixels[(y * 24 + x) * 3] = 255;
            }
        }

        var values = new float[Processor.ValuesPerImage];
        Processor.Process(new RgbImage(24, 8, pixels), values);
        float white = (1f - ClipModelWriter.ImageMean[0]) / ClipModelWriter.ImageStd[0];
        Assert.All(values[..64], v => Assert.Equal(white, v, 1e-5f));
    }

    [Fact]
    public void ShrinkingAveragesInsteadOfSampling()
    {
        // A 1-pixel checkerboard shrunk 4× must come out mid-grey, not black or white.
        var pixels = new byte[32 * 32 * 3];
        for (int p = 0; p < 32 * 32; p++)
        {
            byte value = (byte)(((p % 32) + (p / 32)) % 2 * 255);
            pixels[p * 3] = pixels[p * 3 + 1] = pixels[p * 3 + 2] = value;
        }

        RgbImage small = BicubicResampler.Resize(new RgbImage(32, 32, pixels), 8, 8);
        Assert.All(small.Pixels, v => Assert.InRange(v, 120, 135));
    }

    [Fact]
    public void AWindowEqualsTheSameRegionOfTheFullResize()
    {
        var random = new Random(1);
        var image = new RgbImage(37, 23, [.. Enumerable.Range(0, 37 * 23 * 3).Select(_ => (byte)random.Next(256))]);
        RgbImage full = BicubicResampler.Resize(image, 50, 31);
        RgbImage window = BicubicResampler.ResizeWindow(image, 50, 31, 7, 4, 20, 10);
        for (int y = 0; y < 10; y++)
        {
            int fullStart = ((y + 4) * 50 + 7) * 3, windowStart = y * 20 * 3;
            Assert.Equal(full.Pixels[fullStart..(fullStart + 60)], window.Pixels[windowStart..(windowStart + 60)]);
        }
    }

    [Fact]
    public void AnExtremeAspectRatioOnlyResizesTheCrop()
    {
        // 1 × 100 (the largest aspect ratio allowed): the shortest edge to 8 makes it 8 × 800; only the 8 × 8 crop is computed.
        var image = new RgbImage(1, 100, [.. Enumerable.Repeat((byte)200, 100 * 3)]);
        var values = new float[Processor.ValuesPerImage];
        Processor.Process(image, values);
        Assert.Equal((200 / 255f - ClipModelWriter.ImageMean[0]) / ClipModelWriter.ImageStd[0], values[0], 1e-5f);
        Assert.Throws<ArgumentException>(() => Processor.Process(new RgbImage(1, 101, new byte[303]), values));
    }
}
