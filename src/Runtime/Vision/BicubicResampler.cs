namespace Serving.Runtime.Vision;

/// <summary>
/// Pillow's bicubic resize (a = −0.5, support widened by the scale when shrinking, so a
/// 1000-pixel side shrunk to 224 averages ~18 source pixels per output instead of sampling
/// 4 and aliasing), separable, rounded to bytes after each pass as Pillow does. This is
/// what Hugging Face's Python CLIPImageProcessor runs; transformers.js in Node samples the
/// bicubic without widening (sharp's affine), which agrees on smooth images.
/// </summary>
public static class BicubicResampler
{
    private const double A = -0.5;

    public static RgbImage Resize(RgbImage image, int width, int height) =>
        ResizeWindow(image, width, height, 0, 0, width, height);

    /// <summary>
    /// The window [left, left + windowWidth) × [top, top + windowHeight) of the image resized to
    /// width × height, computing only that window: a 1 × 10,000 image resized to 224 × 2,240,000
    /// would need 1.5 GB in full, its centre crop 150 KB (plus one 224-column pass over the rows).
    /// </summary>
    public static RgbImage ResizeWindow(RgbImage image, int width, int height, int left, int top, int windowWidth, int windowHeight)
    {
        byte[] horizontal = Pass(image.Pixels, image.Width, image.Height, width, left, windowWidth, horizontal: true);
        byte[] both = Pass(horizontal, windowWidth, image.Height, height, top, windowHeight, horizontal: false);
        return new RgbImage(windowWidth, windowHeight, both);
    }

    /// <summary>
    /// Resamples one axis of a width × height source to <paramref name="outSize"/> samples and
    /// keeps outputs [offset, offset + count).
    /// </summary>
    private static byte[] Pass(byte[] source, int width, int height, int outSize, int offset, int count, bool horizontal)
    {
        int inSize = horizontal ? width : height;
        (int[] starts, double[][] weights) = Coefficients(inSize, outSize);
        int outWidth = horizontal ? count : width, outHeight = horizontal ? height : count;
        var result = new byte[outWidth * outHeight * 3];
        Parallel.For(0, outHeight, y =>
        {
            for (int x = 0; x < outWidth; x++)
            {
                int o = (horizontal ? x : y) + offset;
                double[] w = weights[o];
                double r = 0, g = 0, b = 0;
                for (int k = 0; k < w.Length; k++)
                {
                    int i = starts[o] + k;
                    int s = (horizontal ? y * width + i : i * width + x) * 3;
                    r += w[k] * source[s];
                    g += w[k] * source[s + 1];
                    b += w[k] * source[s + 2];
                }

                int d = (y * outWidth + x) * 3;
                result[d] = Clamp(r);
                result[d + 1] = Clamp(g);
                result[d + 2] = Clamp(b);
            }
        });
        return result;
    }

    private static (int[] Starts, double[][] Weights) Coefficients(int inSize, int outSize)
    {
        double scale = (double)inSize / outSize, filterScale = Math.Max(scale, 1.0), support = 2.0 * filterScale;
        var starts = new int[outSize];
        var weights = new double[outSize][];
        for (int o = 0; o < outSize; o++)
        {
            double centre = (o + 0.5) * scale;
            int min = Math.Max(0, (int)(centre - support + 0.5)), max = Math.Min(inSize, (int)(centre + support + 0.5));
            var w = new double[max - min];
            double total = 0;
            for (int i = min; i < max; i++)
            {
                total += w[i - min] = Cubic((i - centre + 0.5) / filterScale);
            }

            for (int k = 0; k < w.Length; k++)
            {
                w[k] = total == 0 ? 0 : w[k] / total;
            }

            starts[o] = min;
            weights[o] = w;
        }

        return (starts, weights);
    }

    private static double Cubic(double x)
    {
        x = Math.Abs(x);
        return x < 1 ? ((A + 2) * x - (A + 3)) * x * x + 1
            : x < 2 ? (((x - 5) * x + 8) * x - 4) * A
            : 0;
    }

    private static byte Clamp(double value) => (byte)Math.Clamp(Math.Round(value), 0, 255);
}
