using System.Diagnostics;
using System.Text.Json;
using LLama;
using LLama.Native;
using Serving.Runtime.Gguf;
using Serving.Runtime.Models.Gemma3;
using Serving.Peers;
using static Serving.Peers.PeerFigures;

namespace Serving.LlamaPeer;

internal static class Commands
{
    public static int Gguf(Options o)
    {
        string folder = o.Required("model"), output = o.Required("out");
        bool padLayout = (o.Get("layout") ?? "as-is") switch
        {
            "as-is" => false,
            "padded" => true,
            var other => throw new UsageException($"--layout must be as-is or padded, got '{other}'"),
        };
        foreach (string problem in Gemma3GgufExport.LayoutMismatches(Gemma3GgufExport.ReadConfig(folder)))
        {
            Console.Error.WriteLine(padLayout
                ? $"note: padding with identity layers because {problem}"
                : $"warning: llama.cpp's gemma3 layout differs (try --layout padded for a correctness check): {problem}");
        }

        var clock = Stopwatch.StartNew();
        Gemma3GgufExport.Write(folder, output, padLayout);
        Console.Error.WriteLine($"wrote {output} ({new FileInfo(output).Length:N0} bytes) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    public static int Quantize(Options o)
    {
        string type = o.Required("type");
        LLamaFtype ftype = type switch
        {
            "q4_0" => LLamaFtype.MOSTLY_Q4_0,
            "q8_0" => LLamaFtype.MOSTLY_Q8_0,
            "f16" => LLamaFtype.MOSTLY_F16,
            _ => throw new UsageException($"--type must be q4_0, q8_0 or f16, got '{type}'"),
        };
        Quiet();
        // The quantizer's P/Invoke does not go through NativeApi's static constructor, which
        // picks the native build (avx512/avx2/...) and loads it; touch NativeApi first.
        _ = NativeApi.llama_max_devices();
        var clock = Stopwatch.StartNew();
        if (!LLamaQuantizer.Quantize(o.Required("in"), o.Required("out"), ftype, nthread: o.Int("threads", 2)))
        {
            Console.Error.WriteLine("llama_model_quantize failed");
            return 1;
        }

        Console.Error.WriteLine($"wrote {o.Required("out")} ({new FileInfo(o.Required("out")).Length:N0} bytes) in {clock.Elapsed.TotalSeconds:F1} s");
        return 0;
    }

    public static int Bench(Options o)
    {
        int threads = o.Int("threads", 2), promptTokens = o.Int("prompt-tokens", 64), decode = o.Int("decode", 64), rounds = o.Int("rounds", 3);
        Quiet();
        string? text = o.Get("prompt");
        // A text has at most one token per UTF-16 unit, plus BOS: the context (and the one batch
        // the prompt goes in) must hold it before it can be tokenized.
        int promptBound = text is null ? promptTokens : text.Length + 1;
        using var session = LlamaSession.Open(o.Required("gguf"), threads, promptBound + decode + 1);
        long rssAfterLoad = Environment.WorkingSet;
        int[] prompt = text is not null ? session.Tokenize(text, addBos: true) : SyntheticPrompt(session, promptTokens);
        var prefillMs = new List<double>();
        var decodeTokensPerSecond = new List<double>();
        int[] generated = [];
        for (int round = 0; round < rounds; round++)
        {
            session.Reset();
            var clock = Stopwatch.StartNew();
            int next = session.Feed(prompt, 0);
            prefillMs.Add(clock.Elapsed.TotalMilliseconds);
            var tokens = new List<int> { next };
            clock.Restart();
            for (int i = 1; i < decode; i++)
            {
                next = session.Feed([next], prompt.Length + i - 1);
                tokens.Add(next);
            }

            decodeTokensPerSecond.Add((decode - 1) / clock.Elapsed.TotalSeconds);
            generated = [.. tokens];
        }

        WriteJson(new Dictionary<string, object>
        {
            ["gguf"] = o.Required("gguf"),
            ["gguf_bytes"] = new FileInfo(o.Required("gguf")).Length,
            ["threads"] = threads,
        }, RoundFigures(session.LoadMs, rssAfterLoad, prompt.Length, generated, prefillMs, decodeTokensPerSecond));
        return 0;
    }

    /// <summary>
    /// Ours on the same footing as <see cref="Bench"/>: one model load, then rounds of prefill + decode through
    /// one engine (the server's path, prefix caching off so every round prefills the whole prompt).
    /// </summary>
    public static int Ours(Options o)
    {
        int decode = o.Int("decode", 64), rounds = o.Int("rounds", 3);
        string text = o.Required("prompt");
        var clock = Stopwatch.StartNew();
        using var model = Serving.Runtime.Models.DecoderModel.Load(o.Required("model"),
            new Serving.Runtime.Models.DecoderLoadOptions
            {
                Dtype = o.Get("dtype"),
                PagedAttention = true,
                KvCacheDtype = Serving.Runtime.Generation.Kv.KvCacheDtypes.Parse(o.Get("kv-cache-dtype") ?? "fp32"),
            });
        double loadMs = clock.Elapsed.TotalMilliseconds;
        long rssAfterLoad = Environment.WorkingSet;
        int[] prompt = model.Tokenizer.Encode(text);
        var options = new Serving.Runtime.Generation.GenerateOptions(decode, StopAtEos: false);
        using var engine = Serving.Runtime.Generation.BatchOfOne.CreateEngine(model, prompt.Length + decode);
        var prefillMs = new List<double>();
        var decodeTokensPerSecond = new List<double>();
        IReadOnlyList<int> generated = [];
        for (int round = 0; round < rounds; round++)
        {
            var result = Serving.Runtime.Generation.BatchOfOne.Generate(engine, prompt, options);
            prefillMs.Add(result.PrefillMs);
            decodeTokensPerSecond.Add(result.DecodeTokensPerSecond);
            generated = result.TokenIds;
        }

        WriteJson(new Dictionary<string, object>
        {
            ["model"] = o.Required("model"),
        }, RoundFigures(loadMs, rssAfterLoad, prompt.Length, generated, prefillMs, decodeTokensPerSecond));
        return 0;
    }

    /// <summary>
    /// Perplexity of a text under the GGUF, on exactly the windows `serving eval-ppl` scores: our
    /// folder's tokenizer, line by line (CorpusTokens), consecutive windows of S + 1 tokens
    /// (TokenBatcher.Windows), each from an empty cache.
    /// </summary>
    public static int Ppl(Options o)
    {
        Quiet();
        var tokenizer = Serving.Runtime.Text.GemmaTokenizer.Load(o.Required("model"));
        int[] tokens = Serving.Trainer.Training.CorpusTokens.Encode(tokenizer, File.ReadAllText(o.Required("text")));
        int window = o.Int("seq-len", 512), maxWindows = o.Int("max-windows", int.MaxValue);
        using var session = LlamaSession.Open(o.Required("gguf"), o.Int("threads", 2), window);
        double total = 0;
        long count = 0;
        int windows = 0;
        foreach (var (inputs, targets) in Serving.Trainer.Training.TokenBatcher.Windows(tokens, window).Take(maxWindows))
        {
            total += session.WindowLoss(inputs, targets);
            count += targets.Length;
            windows++;
        }

        if (windows == 0)
        {
            throw new UsageException($"the text has {tokens.Length} tokens; one window of {window} needs more");
        }

        WriteJson(new Dictionary<string, object>
        {
            ["tokens"] = count,
            ["windows"] = windows,
            ["loss"] = Math.Round(total / count, 4),
            ["perplexity"] = Math.Round(Math.Exp(total / count), 3),
        });
        return 0;
    }

    public static int Greedy(Options o)
    {
        int maxTokens = o.Int("max-tokens", 32);
        Quiet();
        string? text = o.Get("prompt");
        using var session = LlamaSession.Open(o.Required("gguf"), o.Int("threads", 2), o.Int("context", 1024));
        int[]? llamaPromptIds = text is null ? null : session.Tokenize(text, addBos: true);
        int[] prompt = o.Get("prompt-ids") is { } ids
            ? [.. ids.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(int.Parse)]
            : llamaPromptIds ?? throw new UsageException("--prompt or --prompt-ids is required");
        var generated = new List<int> { session.Feed(prompt, 0) };
        while (generated.Count < maxTokens)
        {
            generated.Add(session.Feed([generated[^1]], prompt.Length + generated.Count - 1));
        }

        var result = new Dictionary<string, object> { ["prompt_token_ids"] = prompt, ["token_ids"] = generated };
        if (llamaPromptIds is not null)
        {
            result["llama_prompt_token_ids"] = llamaPromptIds;
        }

        WriteJson(result);
        return 0;
    }

    /// <summary>
    /// Prints a text that tokenizes (with BOS) to about <c>--tokens</c> tokens: the bench passage
    /// word by word until the count is reached, so ours and llama.cpp can be given the same text.
    /// </summary>
    public static int Prompt(Options o)
    {
        int count = o.Int("tokens", 64);
        Quiet();
        using var session = LlamaSession.Open(o.Required("gguf"), 1, 64);
        string[] words = Passage.Split(' ', StringSplitOptions.RemoveEmptyEntries);
        var text = new System.Text.StringBuilder();
        for (int i = 0; session.Tokenize(text.ToString(), addBos: true).Length < count; i++)
        {
            text.Append(text.Length == 0 ? "" : " ").Append(words[i % words.Length]);
        }

        Console.WriteLine(text);
        return 0;
    }

    public static int Create(Options o)
    {
        Gemma3Config baseline = Gemma3Presets.Find(o.Get("base") ?? "tiny") ?? throw new UsageException($"unknown --base '{o.Get("base")}'");
        Gemma3Config config = baseline with
        {
            NumHiddenLayers = o.Int("layers", 6),
            SlidingWindowPattern = o.Int("pattern", Gemma3GgufExport.LlamaCppSwaPeriod),
        };
        Gemma3ModelWriter.WriteRandom(o.Required("out"), config, (ulong)o.Int("seed", 0));
        Console.Error.WriteLine($"wrote {o.Required("out")}: {config.NumHiddenLayers} layers, every {config.SlidingWindowPattern}th global, window {config.SlidingWindow}");
        return 0;
    }

    public static int Info()
    {
        Quiet();
        Console.WriteLine($"llama.cpp c0c7e147e7efa6c5858754b47259ba4880f8a906 (LLamaSharp.Backend.Cpu 0.30.0 release notes)");
        Console.WriteLine(System.Runtime.InteropServices.Marshal.PtrToStringUTF8(NativeApi.llama_print_system_info()));
        return 0;
    }

    /// <summary>llama.cpp logs every tensor at load; keep warnings and errors only.</summary>
    private static void Quiet() => NativeLogConfig.llama_log_set((level, message) =>
    {
        if (level is LLamaLogLevel.Warning or LLamaLogLevel.Error)
        {
            Console.Error.Write(message);
        }
    });

    /// <summary>BOS then a passage of ordinary text, repeated and cut to exactly <paramref name="count"/> tokens.</summary>
    private static int[] SyntheticPrompt(LlamaSession session, int count)
    {
        int[] body = session.Tokenize(Passage + " ", addBos: false);
        var prompt = new List<int>(count) { session.Tokenize("", addBos: true).FirstOrDefault(2) };
        while (prompt.Count < count)
        {
            prompt.AddRange(body.Take(count - prompt.Count));
        }

        return [.. prompt];
    }

    private const string Passage = "In the beginning God created the heaven and the earth. And the earth was without form, and void; "
        + "and darkness was upon the face of the deep. And the Spirit of God moved upon the face of the waters.";

}
