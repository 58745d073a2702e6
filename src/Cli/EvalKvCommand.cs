using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;

namespace Serving.Cli;

/// <summary>
/// <c>serving eval-kv --model DIR [--dtype q4|q8|fp16|fp32] --prompts FILE --budgets LIST --policies LIST --gen N [--json]</c>:
/// KV policies against full attention, teacher-forced on full attention's continuation.
/// </summary>
internal static class EvalKvCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder (Hugging Face ONNX layout)", Required = true };
        var prompts = new Option<FileInfo>("--prompts") { Description = "Prompts, one per line (UTF-8; blank lines are skipped)", Required = true };
        var budgets = new Option<string>("--budgets") { Description = "Comma-separated KV budgets in tokens, e.g. 512,1024,2048", Required = true };
        var policies = new Option<string>("--policies") { Description = "Comma-separated policies: triattention, window, knorm", DefaultValueFactory = _ => "triattention,window,knorm" };
        var gen = new Option<int>("--gen") { Description = "Tokens full attention generates per prompt, and the others are scored on", DefaultValueFactory = _ => 64 };
        var beta = new Option<int>("--beta") { Description = "Tokens added between compressions (the paper's β)", DefaultValueFactory = _ => new KvCompressionOptions().Beta };
        var json = new Option<bool>("--json") { Description = "Print one JSON array of rows instead of the table" };
        var dtype = DtypeOption.Create();
        var command = new Command("eval-kv", "Compare KV-cache eviction policies with full attention (top-1 agreement, KL, KV memory, decode speed)")
        {
            model, dtype, prompts, budgets, policies, gen, beta, json,
        };
        command.SetAction(result => Run(result.GetValue(model)!, result.GetValue(dtype), result.GetValue(prompts)!, ParseBudgets(result.GetValue(budgets)!),
            ParsePolicies(result.GetValue(policies)!), result.GetValue(gen), result.GetValue(beta), result.GetValue(json)));
        return command;
    }

    private static int[] ParseBudgets(string list)
    {
        string[] parts = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var budgets = new int[parts.Length];
        for (int i = 0; i < parts.Length; i++)
        {
            if (!int.TryParse(parts[i], NumberStyles.None, CultureInfo.InvariantCulture, out budgets[i]) || budgets[i] < 1)
            {
                throw new UsageException($"--budgets: '{parts[i]}' is not a whole number of tokens ≥ 1");
            }
        }

        return budgets.Length > 0 ? budgets : throw new UsageException("--budgets lists no budget");
    }

    private static string[] ParsePolicies(string list)
    {
        string[] policies = list.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (string policy in policies)
        {
            if (!KvCompressionOptions.PolicyNames.Contains(policy))
            {
                throw new UsageException($"--policies: unknown policy '{policy}'; expected {string.Join(", ", KvCompressionOptions.PolicyNames)}");
            }
        }

        return policies.Length > 0 ? policies : throw new UsageException("--policies lists no policy");
    }

    private static int Run(DirectoryInfo folder, string? dtype, FileInfo promptFile, int[] budgets, string[] policies, int gen, int beta, bool json)
    {
        if (gen < 1)
        {
            throw new UsageException($"--gen must be at least 1, got {gen}");
        }

        if (!folder.Exists)
        {
            throw new UsageException($"model folder not found: {folder.FullName}");
        }

        if (!promptFile.Exists)
        {
            throw new UsageException($"prompts not found: {promptFile.FullName}");
        }

        using ILoggerFactory logging = CommandLine.StderrLogging();
        using DecoderModel decoder = DecoderModel.Load(folder.FullName, new DecoderLoadOptions { Dtype = dtype }, logging.CreateLogger("serving"));
        List<int[]> prompts = ReadPrompts(decoder, promptFile, gen);
        var template = new KvCompressionOptions { Beta = beta };
        CheckCompression(decoder, policies, budgets, template);
        Console.Error.WriteLine($"{prompts.Count} prompts of {prompts.Min(p => p.Length)}–{prompts.Max(p => p.Length)} tokens, {gen} tokens each");
        List<KvEvaluationRow> rows = ProgressBars.Run("runs", progress => KvEvaluation.Run(decoder, prompts, policies, budgets, gen, template, progress));
        if (json)
        {
            Console.WriteLine(JsonSerializer.Serialize(rows, new JsonSerializerOptions { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower }));
            return CommandLine.Ok;
        }

        KvEvaluationRow full = rows[0];
        Console.WriteLine("| policy | budget | top-1 agreement | mean KL (nats) | KV tokens peak | KV MiB peak (all layers) | global-layer KV MiB peak | decode tok/s |");
        Console.WriteLine("|---|---|---|---|---|---|---|---|");
        foreach (KvEvaluationRow row in rows)
        {
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"| {row.Policy} | {(row.Budget == 0 ? "full" : row.Budget)} | {row.Top1Agreement:P1} | {row.MeanKl:F4} | {row.KvTokensPeak} | "
                + $"{Mib(row.KvBytesPeak)} ({(double)full.KvBytesPeak / row.KvBytesPeak:F1}x smaller) | {Mib(row.GlobalKvBytesPeak)} ({(double)full.GlobalKvBytesPeak / row.GlobalKvBytesPeak:F1}x smaller) | {row.DecodeTokensPerSecond:F1} |"));
        }

        return CommandLine.Ok;
    }

    private static string Mib(long bytes) => (bytes / (1024.0 * 1024)).ToString("F1", CultureInfo.InvariantCulture);

    private static List<int[]> ReadPrompts(DecoderModel decoder, FileInfo file, int gen)
    {
        var prompts = new List<int[]>();
        int line = 0;
        foreach (string text in File.ReadLines(file.FullName))
        {
            line++;
            if (string.IsNullOrWhiteSpace(text))
            {
                continue;
            }

            int[] ids = decoder.Tokenizer.Encode(text);
            if (ids.Length + gen > decoder.Config.MaxPositionEmbeddings)
            {
                throw new UsageException($"{file.FullName}:{line}: {ids.Length} prompt tokens + --gen {gen} exceed the context length {decoder.Config.MaxPositionEmbeddings}");
            }

            prompts.Add(ids);
        }

        return prompts.Count > 0 ? prompts : throw new UsageException($"{file.FullName} has no prompts");
    }

    private static void CheckCompression(DecoderModel decoder, string[] policies, int[] budgets, KvCompressionOptions template)
    {
        var policiesOfModel = new KvPolicies(decoder);
        foreach (string policy in policies.Where(policy => policy != KvCompressionOptions.None))
        {
            foreach (int budget in budgets)
            {
                if (policiesOfModel.Validate(template with { Policy = policy, Budget = budget }) is { } invalid)
                {
                    throw new UsageException($"--policies {policy} --budgets {budget}: {invalid.Message}");
                }
            }
        }
    }
}
