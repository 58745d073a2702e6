using Serving.Peers;
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
