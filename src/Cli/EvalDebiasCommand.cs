using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Serving.Runtime.Debiasing;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Evaluation;
using Serving.Trainer.ShapesWorld;

namespace Serving.Cli;

/// <summary>
/// <c>serving eval-debias [--seed N] [--json]</c>: none / projection / WRING on the synthetic
/// embedding benchmark; with <c>--model DIR</c>, on a CLIP folder trained on the shapes world
/// (models/shapes-clip) and its balanced test set.
/// </summary>
internal static class EvalDebiasCommand
{
    /// <summary>Images per ONNX Runtime call: 64 × 3 × 64² floats is 3 MB.</summary>
    private const int ImageBatch = 64;

    public static Command Create()
    {
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic embeddings (or of the shapes test set with --model)", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print the rows as one JSON array" };
        var model = new Option<DirectoryInfo?>("--model") { Description = "A CLIP folder trained on the shapes world: measure on its embeddings of the balanced test set" };
        var repeats = new Option<int>("--repeats") { Description = "With --model: copies of each of the 128 attribute combinations in the test set", DefaultValueFactory = _ => 8 };
        var command = new Command("eval-debias", "Compare projection and WRING debiasing: on a synthetic embedding benchmark, or (--model) on a CLIP trained on the shapes world with a planted background confounder")
        {
            seed, json, model, repeats,
        };
        command.SetAction(result => result.GetValue(model) is { } folder
            ? RunShapes(folder, result.GetValue(repeats), result.GetValue(seed), result.GetValue(json))
            : Run(result.GetValue(seed), result.GetValue(json)));
        return command;
    }

    private static int Run(int seed, bool json)
    {
        IReadOnlyList<DebiasScores> rows = new DebiasBenchmark(seed).Run();
        if (json)
        {
            PrintJson(rows);
            return CommandLine.Ok;
        }

        Console.WriteLine("| method | target MaxSkew@100 | target KL@100 | target bias | unconsidered bias | unconsidered change | recall@10 | norm change |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (DebiasScores row in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {row.Method} | {row.TargetMaxSkew:F3} | {row.TargetKl:F4} | {row.TargetBias:F4} | {row.UnconsideredBias:F4} | {row.UnconsideredChangePercent:+0.0;-0.0;0.0}% | {row.RecallAt10:F3} | {row.NormChangePercent:F2}% |"));
        }

        return CommandLine.Ok;
    }

    private static int RunShapes(DirectoryInfo folder, int repeats, int seed, bool json)
    {
        if (!folder.Exists)
        {
            throw new UsageException($"model folder not found: {folder.FullName}");
        }

        if (repeats < 1)
        {
            throw new UsageException($"--repeats must be at least 1, got {repeats}");
        }

        using ClipModel model = ClipModel.Load(folder.FullName);
        if (model.Config.ImageSize != Scene.ImageSize)
        {
            throw new UsageException($"{folder.FullName} takes {model.Config.ImageSize}² images; the shapes world draws {Scene.ImageSize}² (train one with serving train-clip)");
        }

        var benchmark = new ShapesDebiasBenchmark(model.EmbedTexts, scenes => EmbedScenes(model, scenes), repeats, seed);
        IReadOnlyList<ShapesDebiasScores> rows = benchmark.Run();
        if (json)
        {
            PrintJson(rows);
            return CommandLine.Ok;
        }

        Console.WriteLine($"{benchmark.TestImages} balanced test images; top k = {ShapesDebiasBenchmark.TopK}; background = debiased concept, size = unconsidered concept");
        Console.WriteLine("| method | concept from | background MaxSkew@100 | background KL@100 | shape accuracy | worst-group shape acc. | recall@10 | background accuracy | size MaxSkew@100 (colour queries) | size skew change | size bias | size bias change |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|---|---|---|---|");
        foreach (ShapesDebiasScores row in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {row.Method} | {row.ConceptFrom} | {row.BackgroundMaxSkew:F3} | {row.BackgroundKl:F4} | {row.ShapeAccuracy:P1} | {row.WorstGroupShapeAccuracy:P1} | {row.RecallAt10:F3} | {row.BackgroundAccuracy:P1} | {row.SizeMaxSkew:F3} | {row.SizeSkewChangePercent:+0.0;-0.0;0.0}% | {row.SizeBias:F4} | {row.SizeBiasChangePercent:+0.0;-0.0;0.0}% |"));
        }

        return CommandLine.Ok;
    }

    private static float[][] EmbedScenes(ClipModel model, IReadOnlyList<Scene> scenes) =>
        [.. scenes.Chunk(ImageBatch).SelectMany(chunk => model.EmbedImages([.. chunk.Select(SceneRenderer.Render)]))];

    private static void PrintJson<T>(IReadOnlyList<T> rows) =>
        Console.WriteLine(JsonSerializer.Serialize(rows, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
}
