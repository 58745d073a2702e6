using Serving.Runtime.Vision;
using SkiaSharp;

namespace Serving.Trainer.ShapesWorld;

/// <summary>
/// Draws a <see cref="Scene"/> with SkiaSharp into a 64² RGB image: the background (water: a
/// blue field with lighter wave lines; grass: a green field with darker and lighter blades),
/// then the shape, anti-aliased, turned by its angle, striped or plain. Colours are jittered
/// a little from the scene's detail seed so no single pixel value names an attribute.
/// </summary>
public static class SceneRenderer
{
    public static RgbImage Render(Scene scene)
    {
        var random = new Random(scene.DetailSeed);
        var info = new SKImageInfo(Scene.ImageSize, Scene.ImageSize, SKColorType.Rgba8888, SKAlphaType.Premul);
        using var bitmap = new SKBitmap(info);
        using (var canvas = new SKCanvas(bitmap))
        {
            DrawBackground(canvas, scene.Background, random);
            DrawShape(canvas, scene, random);
        }

        ReadOnlySpan<byte> rgba = bitmap.GetPixelSpan();
        var rgb = new byte[Scene.ImageSize * Scene.ImageSize * 3];
        for (int i = 0, j = 0; i < rgb.Length; i += 3, j += 4)
        {
            rgb[i] = rgba[j];
            rgb[i + 1] = rgba[j + 1];
            rgb[i + 2] = rgba[j + 2];
        }

        return new RgbImage(Scene.ImageSize, Scene.ImageSize, rgb);
    }

    /// <summary>PNG bytes of the scene (for README pictures and tests).</summary>
    public static byte[] Png(Scene scene)
    {
        RgbImage image = Render(scene);
        var info = new SKImageInfo(image.Width, image.Height, SKColorType.Rgba8888, SKAlphaType.Opaque);
        using var bitmap = new SKBitmap(info);
        Span<byte> rgba = bitmap.GetPixelSpan();
        for (int i = 0, j = 0; i < image.Pixels.Length; i += 3, j += 4)
        {
            (rgba[j], rgba[j + 1], rgba[j + 2], rgba[j + 3]) = (image.Pixels[i], image.Pixels[i + 1], image.Pixels[i + 2], 255);
        }

        using SKData data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    private static void DrawBackground(SKCanvas canvas, Background background, Random random)
    {
        using var paint = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Stroke };
        if (background == Background.Water)
        {
            canvas.Clear(Jitter(new SKColor(40, 90, 190), random, 20));
            paint.StrokeWidth = 1.5f;
            for (int line = 0; line < 6; line++)
            {
                paint.Color = Jitter(new SKColor(120, 170, 235), random, 20);
                float y = (float)(random.NextDouble() * Scene.ImageSize), phase = (float)(random.NextDouble() * 16);
                using var builder = new SKPathBuilder();
                builder.MoveTo(-8 - phase, y);
                for (float x = -8 - phase; x < Scene.ImageSize + 8; x += 16)
                {
                    builder.QuadTo(x + 4, y - 3, x + 8, y);
                    builder.QuadTo(x + 12, y + 3, x + 16, y);
                }

                using SKPath path = builder.Detach();
                canvas.DrawPath(path, paint);
            }
        }
        else
        {
            canvas.Clear(Jitter(new SKColor(60, 150, 55), random, 20));
            paint.StrokeWidth = 1f;
            for (int blade = 0; blade < 40; blade++)
            {
                paint.Color = Jitter(random.Next(2) == 0 ? new SKColor(30, 100, 30) : new SKColor(110, 190, 80), random, 15);
                float x = (float)(random.NextDouble() * Scene.ImageSize), y = (float)(random.NextDouble() * Scene.ImageSize);
                canvas.DrawLine(x, y, x + (float)(random.NextDouble() * 4 - 2), y - 3 - (float)(random.NextDouble() * 4), paint);
            }
        }
    }

    private static void DrawShape(SKCanvas canvas, Scene scene, Random random)
    {
        using SKPath outline = Outline(scene);
        SKColor colour = Jitter(Base(scene.Colour), random, 15);
        using var fill = new SKPaint { IsAntialias = true, Style = SKPaintStyle.Fill, Color = colour };
        canvas.Save();
        canvas.Translate(scene.CentreX, scene.CentreY);
        canvas.RotateDegrees(scene.Angle);
        canvas.DrawPath(outline, fill);
        if (scene.Texture == Texture.Striped)
        {
            canvas.ClipPath(outline, SKClipOperation.Intersect, antialias: true);
            using var stripe = new SKPaint
            {
                IsAntialias = true, Style = SKPaintStyle.Stroke, StrokeWidth = 2f,
                Color = new SKColor((byte)(colour.Red / 3), (byte)(colour.Green / 3), (byte)(colour.Blue / 3)),
            };
            for (float offset = -scene.Radius; offset < scene.Radius; offset += 5)
            {
                canvas.DrawLine(offset, -scene.Radius, offset, scene.Radius, stripe);
            }
        }

        canvas.Restore();
    }

    /// <summary>The shape centred on the origin, unturned.</summary>
    private static SKPath Outline(Scene scene)
    {
        using var path = new SKPathBuilder();
        float r = scene.Radius;
        switch (scene.Shape)
        {
            case Shape.Circle:
                path.AddCircle(0, 0, r);
                break;
            case Shape.Square:
                path.AddRect(new SKRect(-r * 0.75f, -r * 0.75f, r * 0.75f, r * 0.75f));
                break;
            case Shape.Triangle:
                AddPolygon(path, 3, r, r);
                break;
            default:
                AddPolygon(path, 10, r, r * 0.45f);
                break;
        }

        return path.Detach();
    }

    /// <summary>A regular polygon of <paramref name="corners"/> corners alternating between two radii (a star when they differ).</summary>
    private static void AddPolygon(SKPathBuilder path, int corners, float outer, float inner)
    {
        for (int i = 0; i < corners; i++)
        {
            double angle = -Math.PI / 2 + i * 2 * Math.PI / corners;
            float radius = i % 2 == 0 ? outer : inner;
            var point = new SKPoint((float)(radius * Math.Cos(angle)), (float)(radius * Math.Sin(angle)));
            if (i == 0)
            {
                path.MoveTo(point);
            }
            else
            {
                path.LineTo(point);
            }
        }

        path.Close();
    }

    private static SKColor Base(Colour colour) => colour switch
    {
        Colour.Red => new SKColor(220, 40, 40),
        Colour.Yellow => new SKColor(240, 220, 50),
        Colour.Purple => new SKColor(140, 60, 180),
        _ => new SKColor(245, 245, 245),
    };

    private static SKColor Jitter(SKColor colour, Random random, int amount)
    {
        byte Channel(byte value) => (byte)Math.Clamp(value + random.Next(-amount, amount + 1), 0, 255);
        return new SKColor(Channel(colour.Red), Channel(colour.Green), Channel(colour.Blue));
    }
}
