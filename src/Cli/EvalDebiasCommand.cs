using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Serving.Runtime.Debiasing;

namespace Serving.Cli;

/// <summary><c>serving eval-debias [--seed N] [--json]</c>: none / projection / WRING on the synthetic benchmark.</summary>
internal static class EvalDebiasCommand
{
    public static Command Create()
    {
        var seed = new Option<int>("--seed") { Description = "Seed of the synthetic embeddings", DefaultValueFactory = _ => 1 };
        var json = new Option<bool>("--json") { Description = "Print the rows as one JSON array" };
        var command = new Command("eval-debias", "Compare projection and WRING debiasing on a synthetic benchmark with a planted target concept, an unconsidered concept and semantic classes") { seed, json };
        command.SetAction(result => Run(result.GetValue(seed), result.GetValue(json)));
        return command;
    }

    private static int Run(int seed, bool json)
    {
        IReadOnlyList<DebiasScores> rows = new DebiasBenchmark(seed).Run();
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(rows, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
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
}
