using Serving.Peers;
using Serving.LlamaPeer;

// llama-peer: llama.cpp (through LLamaSharp) on the same weights as our model folders (issue 16).
//   gguf      --model DIR --out FILE.gguf [--layout as-is|padded]   our fp32 Gemma 3 folder → llama.cpp gemma3 GGUF (f32)
//   quantize  --in F32.gguf --out FILE.gguf --type q4_0|q8_0|f16
//   bench     --gguf FILE [--threads 2] [--prompt-tokens 64|512] [--decode 64] [--rounds 3]
//   ours      --model DIR [--dtype q4] [--kv-cache-dtype fp16] --prompt TEXT [--decode 64] [--rounds 3]   our engine, measured as bench measures llama.cpp
//   ppl       --gguf FILE --model DIR --text FILE [--seq-len 512] [--max-windows N]   perplexity on eval-ppl's windows (our tokenizer)
//   greedy    --gguf FILE (--prompt TEXT | --prompt-ids 2,651,...) [--max-tokens 32] [--threads 2] [--context 1024]
//   create    --out DIR [--base tiny] [--layers 6] [--pattern 6] [--seed 0]   a folder in llama.cpp's fixed gemma3 layout
//   prompt    --gguf FILE --tokens N                        a text of about N tokens (the same text for ours and llama.cpp)
//   info      llama.cpp's build and system info
try
{
    if (args.Length == 0)
    {
        throw new UsageException("usage: llama-peer gguf|quantize|bench|ours|greedy|ppl|create|prompt|info [options]");
    }

    var options = Options.Parse(args.AsSpan(1));
    return args[0] switch
    {
        "gguf" => Commands.Gguf(options),
        "quantize" => Commands.Quantize(options),
        "bench" => Commands.Bench(options),
        "ours" => Commands.Ours(options),
        "greedy" => Commands.Greedy(options),
        "ppl" => Commands.Ppl(options),
        "create" => Commands.Create(options),
        "prompt" => Commands.Prompt(options),
        "info" => Commands.Info(),
        var other => throw new UsageException($"unknown command '{other}'"),
    };
}
catch (UsageException e)
{
    Console.Error.WriteLine($"error: {e.Message}");
    return 2;
}
