using Serving.GenAiPeer;

// genai-peer: ONNX Runtime GenAI 0.20 on our model folders (issue 17).
//   generate  --model DIR --prompt-ids 2,105,... [--max-new 16] [--dtype q4 | --onnx-file onnx/model_q4.onnx]   greedy token ids (JSON)
//   bench     --model DIR [--prompt-tokens 64 | --prompt-ids ...] [--new-tokens 64] [--reps 3] [--dtype q4]     GenAI's load, prefill and decode figures (JSON)
//   ours      the same options and figures for our engine (paged attention, one engine for every rep)
try
{
    if (args.Length == 0)
    {
        throw new UsageException("usage: genai-peer generate|bench|ours [options]");
    }

    var options = Options.Parse(args.AsSpan(1));
    return args[0] switch
    {
        "generate" => Commands.Generate(options),
        "bench" => Commands.Bench(options),
        "ours" => Commands.Ours(options),
        var other => throw new UsageException($"unknown command '{other}'"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}

internal sealed class UsageException(string message) : Exception(message);

/// <summary>"--name value" pairs.</summary>
internal sealed class Options
{
    private readonly Dictionary<string, string> _values = new(StringComparer.Ordinal);

    public static Options Parse(ReadOnlySpan<string> args)
    {
        var options = new Options();
        for (int i = 0; i < args.Length; i += 2)
        {
            if (!args[i].StartsWith("--", StringComparison.Ordinal) || i + 1 >= args.Length)
            {
                throw new UsageException($"expected '--name value' pairs, got '{args[i]}'");
            }

            options._values[args[i][2..]] = args[i + 1];
        }

        return options;
    }

    public string? Get(string name) => _values.GetValueOrDefault(name);

    public string Required(string name) => Get(name) ?? throw new UsageException($"--{name} is required");

    public int Int(string name, int fallback) => Get(name) is { } text
        ? int.TryParse(text, out int value) && value > 0 ? value : throw new UsageException($"--{name} must be a positive integer, got '{text}'")
        : fallback;
}
