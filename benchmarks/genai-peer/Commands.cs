using System.Diagnostics;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Peers;
using static Serving.Peers.PeerFigures;

namespace Serving.GenAiPeer;

internal static class Commands
{
    public static int Generate(Options o)
    {
        int[] prompt = PromptIds(o.Required("prompt-ids"));
        using var session = GenAiSession.Open(o.Required("model"), OnnxFile(o));
        GreedyRun run = session.Greedy(prompt, o.Int("max-new", 16));
        WriteJson(new Dictionary<string, object> { ["prompt_token_ids"] = prompt, ["token_ids"] = run.TokenIds });
        return 0;
    }

    /// <summary>
    /// One load, then <c>--reps</c> greedy generations of the same prompt, each from an empty cache:
    /// the figures of llama-peer's bench and ours (first round cold, median of the rest warm).
    /// </summary>
    public static int Bench(Options o)
    {
        string folder = o.Required("model");
        int newTokens = o.Int("new-tokens", 64), reps = o.Int("reps", 3);
        int[] prompt = Prompt(o, folder);
        using var session = GenAiSession.Open(folder, OnnxFile(o));
        long rssAfterLoad = Environment.WorkingSet;
        var runs = new List<GreedyRun>();
        for (int round = 0; round < reps; round++)
        {
            runs.Add(session.Greedy(prompt, newTokens));
        }

        var figures = new Dictionary<string, object> { ["engine"] = "onnxruntime-genai 0.20.0", ["model"] = folder, ["onnx_file"] = OnnxFile(o) ?? "(genai_config.json)" };
        WriteJson(figures, RoundFigures(session.LoadMs, rssAfterLoad, prompt.Length, runs));
        return 0;
    }

    /// <summary>
    /// Ours on the same prompt ids, folder and variant: one load (paged attention, as the server
    /// runs), then <c>--reps</c> generations through one engine, as llama-peer's ours.
    /// </summary>
    public static int Ours(Options o)
    {
        string folder = o.Required("model");
        int newTokens = o.Int("new-tokens", 64), reps = o.Int("reps", 3);
        int[] prompt = Prompt(o, folder);
        var clock = Stopwatch.StartNew();
        using var model = DecoderModel.Load(folder, new DecoderLoadOptions { Dtype = o.Get("dtype"), PagedAttention = true });
        double loadMs = clock.Elapsed.TotalMilliseconds;
        long rssAfterLoad = Environment.WorkingSet;
        using var engine = BatchOfOne.CreateEngine(model, prompt.Length + newTokens);
        var runs = new List<GreedyRun>();
        for (int round = 0; round < reps; round++)
        {
            GenerationResult result = BatchOfOne.Generate(engine, prompt, new GenerateOptions(newTokens, StopAtEos: false));
            runs.Add(new GreedyRun([.. result.TokenIds], result.PrefillMs, result.DecodeTokensPerSecond));
        }

        var figures = new Dictionary<string, object> { ["engine"] = "ours", ["model"] = folder, ["onnx_file"] = Path.GetRelativePath(folder, model.OnnxPath) };
        WriteJson(figures, RoundFigures(loadMs, rssAfterLoad, prompt.Length, runs));
        return 0;
    }

    private static Dictionary<string, object> RoundFigures(double loadMs, long rssAfterLoad, int promptTokens, List<GreedyRun> runs) =>
        PeerFigures.RoundFigures(loadMs, rssAfterLoad, promptTokens, runs[^1].TokenIds,
            [.. runs.Select(run => run.PrefillMs)], [.. runs.Select(run => run.DecodeTokensPerSecond)]);

    /// <summary><c>--onnx-file</c>, else <c>--dtype</c>'s transformers.js file name (q4 → onnx/model_q4.onnx), else null (genai_config.json's file).</summary>
    private static string? OnnxFile(Options o) =>
        o.Get("onnx-file") ?? (o.Get("dtype") is { } dtype ? OnnxVariant.FileName(dtype) : null);

    private static int[] Prompt(Options o, string folder) =>
        o.Get("prompt-ids") is { } ids ? PromptIds(ids) : SyntheticPrompt(folder, o.Int("prompt-tokens", 64));

    private static int[] PromptIds(string text)
    {
        try
        {
            return [.. text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse)];
        }
        catch (FormatException)
        {
            throw new UsageException($"--prompt-ids must be comma-separated integers, got '{text}'");
        }
    }

    /// <summary>
    /// BOS (2) then ids 7, 38, 69, … (steps of 31 modulo the vocabulary, past Gemma's control ids
    /// 0–6): a prompt of exactly <paramref name="count"/> tokens without a tokenizer, the same for every run.
    /// </summary>
    private static int[] SyntheticPrompt(string folder, int count)
    {
        int vocab = JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!["vocab_size"]!.GetValue<int>();
        return [2, .. Enumerable.Range(0, count - 1).Select(i => 7 + (int)(31L * i % (vocab - 7)))];
    }
}
