using System.CommandLine;
using Microsoft.Extensions.Logging;
using Serving.Runtime.Models;
using Serving.Trainer.Evaluation;
using Serving.Trainer.Training;

namespace Serving.Cli;

/// <summary>
/// <c>serving eval-ppl --model DIR [--dtype q4|q8|fp16|fp32] --text FILE [--seq-len N] [--max-windows N] [--baselines-from TRAIN]</c>:
/// perplexity through ONNX Runtime, and optionally unigram and bigram baselines fitted on TRAIN
/// with the model's own tokenizer.
/// </summary>
internal static class EvalPplCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder (Hugging Face ONNX layout)", Required = true };
        var text = new Option<FileInfo>("--text") { Description = "Text to score, UTF-8 (tokenized line by line, as serving train does)", Required = true };
        var seqLen = new Option<int?>("--seq-len") { Description = "Tokens per scored window (default: min(512, the model's context))" };
        var maxWindows = new Option<int>("--max-windows") { Description = "Score at most this many windows", DefaultValueFactory = _ => int.MaxValue };
        var baselines = new Option<FileInfo?>("--baselines-from") { Description = "Training text: also print unigram and bigram perplexities fitted on it" };
        var dtype = DtypeOption.Create();
        var command = new Command("eval-ppl", "Perplexity of a model folder on a text") { model, dtype, text, seqLen, maxWindows, baselines };
        command.SetAction(result => Run(result.GetValue(model)!, result.GetValue(dtype), result.GetValue(text)!, result.GetValue(seqLen), result.GetValue(maxWindows),
            result.GetValue(baselines)));
        return command;
    }

    private static int Run(DirectoryInfo folder, string? dtype, FileInfo text, int? seqLen, int maxWindows, FileInfo? baselines)
    {
        if (baselines is { Exists: false })
        {
            throw new UsageException($"training text not found: {baselines.FullName}");
        }

        if (!folder.Exists)
        {
            throw new UsageException($"model folder not found: {folder.FullName}");
        }

        if (!text.Exists)
        {
            throw new UsageException($"text not found: {text.FullName}");
        }

        if (maxWindows < 1 || seqLen is < 1)
        {
            throw new UsageException("--seq-len and --max-windows must be at least 1");
        }

        using ILoggerFactory logging = CommandLine.StderrLogging();
        using DecoderModel decoder = DecoderModel.Load(folder.FullName, new DecoderLoadOptions { Dtype = dtype }, logging.CreateLogger("serving"));
        int context = decoder.Config.MaxPositionEmbeddings;
        int window = seqLen ?? Math.Min(512, context);
        if (window > context)
        {
            throw new UsageException($"--seq-len {window} exceeds the model's context length ({context})");
        }

        int[] tokens = CorpusTokens.Encode(decoder.Tokenizer, File.ReadAllText(text.FullName));
        if (tokens.Length <= window)
        {
            throw new UsageException($"the text has {tokens.Length} tokens; one window of {window} needs more");
        }

        PerplexityResult result = OnnxPerplexity.Evaluate(decoder, tokens, window, maxWindows);
        Console.WriteLine($"tokens: {result.Tokens}, windows: {result.Windows} x {window}, loss: {result.Loss:F4}, perplexity: {result.Perplexity:F3}");
        if (baselines is not null)
        {
            // Every token of the text, not the windows' first Tokens only: the baselines need no context.
            var ngram = new NgramBaseline(CorpusTokens.Encode(decoder.Tokenizer, File.ReadAllText(baselines.FullName)), decoder.Config.VocabSize);
            PerplexityResult unigram = ngram.Score(tokens, bigram: false), bigram = ngram.Score(tokens, bigram: true);
            Console.WriteLine($"unigram: tokens: {unigram.Tokens}, loss: {unigram.Loss:F4}, perplexity: {unigram.Perplexity:F3}");
            Console.WriteLine($"bigram: tokens: {bigram.Tokens}, loss: {bigram.Loss:F4}, perplexity: {bigram.Perplexity:F3}");
        }

        return CommandLine.Ok;
    }
}
