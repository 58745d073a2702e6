using System.CommandLine;
using Serving.Trainer.ShapesWorld;
using SkiaSharp;

namespace Serving.Cli;

/// <summary>
/// <c>serving shapes-world --out DIR [--count N] [--seed N]</c>: training scenes as PNGs with their
/// captions, to look at the world, and <c>grid.png</c> with all of them at twice the size, 8 a row.
/// </summary>
internal static class ShapesWorldCommand
{
    public static Command Create()
    {
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder for the PNGs and captions.txt", Required = true };
        var count = new Option<int>("--count") { Description = "Scenes to draw", DefaultValueFactory = _ => 16 };
        var seed = new Option<int>("--seed") { Description = "Seed of the scenes", DefaultValueFactory = _ => 1 };
        var command = new Command("shapes-world", "Draw training scenes of the synthetic shapes world (PNG + caption) to inspect it") { output, count, seed };
        command.SetAction(result => Run(result.GetValue(output)!, result.GetValue(count), result.GetValue(seed)));
        return command;
    }

    private static int Run(DirectoryInfo output, int count, int seed)
    {
        if (count < 1)
        {
            throw new UsageException($"--count must be at least 1, got {count}");
        }

        output.Create();
        var random = new Random(seed);
        var lines = new List<string>();
        for (int i = 0; i < count; i++)
        {
            Scene scene = SceneSampler.Training(random);
            string caption = Captions.Training(scene, random);
            string name = $"scene{i:D3}.png";
            File.WriteAllBytes(Path.Combine(output.FullName, name), SceneRenderer.Png(scene));
            lines.Add($"{name}\t{caption}\t{scene.Shape} {scene.Colour} {scene.Size} {scene.Texture} {scene.Background}");
        }

        File.WriteAllLines(Path.Combine(output.FullName, "captions.txt"), lines);
        WriteGrid(output.FullName, count);
        Console.WriteLine($"Wrote {count} scenes to {output.FullName}");
        return CommandLine.Ok;
    }

    private static void WriteGrid(string folder, int count)
    {
        const int PerRow = 8, Gap = 4, Zoom = 2;
        int columns = Math.Min(PerRow, count), rows = (count + PerRow - 1) / PerRow, side = Zoom * Scene.ImageSize, cell = side + Gap;
        using var grid = new SKBitmap(new SKImageInfo(columns * cell + Gap, rows * cell + Gap, SKColorType.Rgba8888, SKAlphaType.Opaque));
        using (var canvas = new SKCanvas(grid))
        {
            canvas.Clear(SKColors.White);
            for (int i = 0; i < count; i++)
            {
                using SKBitmap scene = SKBitmap.Decode(Path.Combine(folder, $"scene{i:D3}.png"));
                var target = SKRect.Create(Gap + i % PerRow * cell, Gap + i / PerRow * cell, side, side);
                canvas.DrawBitmap(scene, target, new SKSamplingOptions(SKFilterMode.Nearest), null);
            }
        }

        using SKData png = grid.Encode(SKEncodedImageFormat.Png, 100);
        File.WriteAllBytes(Path.Combine(folder, "grid.png"), png.ToArray());
    }
}
