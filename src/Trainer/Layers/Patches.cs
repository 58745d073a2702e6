namespace Serving.Trainer.Layers;

/// <summary>
/// The vision tower's patch convolution (stride = kernel = p, no bias) as a matrix product:
/// each image <c>[3, H, W]</c> becomes rows of <c>3·p·p</c> values in (channel, y, x) order, the
/// order of the ONNX Conv weight <c>[hidden, 3, p, p]</c>, so embeddings = rows · Wᵀ.
/// </summary>
internal static class Patches
{
    /// <summary>Writes <c>[images·(size/p)², 3·p·p]</c> rows, patches in raster order as Conv + Reshape emit them.</summary>
    public static void Extract(ReadOnlySpan<float> pixels, int images, int size, int patch, Span<float> rows)
    {
        int perSide = size / patch, width = 3 * patch * patch, plane = size * size;
        for (int image = 0; image < images; image++)
        {
            ReadOnlySpan<float> source = pixels.Slice(image * 3 * plane, 3 * plane);
            for (int py = 0; py < perSide; py++)
            {
                for (int px = 0; px < perSide; px++)
                {
                    Span<float> row = rows.Slice(((image * perSide + py) * perSide + px) * width, width);
                    int k = 0;
                    for (int channel = 0; channel < 3; channel++)
                    {
                        for (int y = 0; y < patch; y++)
                        {
                            source.Slice(channel * plane + (py * patch + y) * size + px * patch, patch).CopyTo(row.Slice(k, patch));
                            k += patch;
                        }
                    }
                }
            }
        }
    }
}
