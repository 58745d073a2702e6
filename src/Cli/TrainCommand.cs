using System.CommandLine;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Text;
using Serving.Trainer.Training;

namespace Serving.Cli;

/// <summary>
/// <c>serving train --corpus FILE --out DIR [--config tiny|kjv] [--steps N] [--seq-len N]
/// [--batch N] [--lr X] [--seed N] [--valid FILE] [--checkpoint-every N] [--resume CHECKPOINT]</c>.
/// The folder gets the model (written by the Gemma 3 builder), <c>checkpoint.bin</c> and
/// <c>training_log.csv</c>.
/// </summary>
internal static class TrainCommand
{
    public const string CheckpointFile = "checkpoint.bin";

    public static Command Create()
    {
        var corpus = new Option<FileInfo>("--corpus") { Description = "Training text, UTF-8, one passage a line", Required = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Model folder to write (empty or new; with --resume, the run's folder)", Required = true };
        var config = new Option<string>("--config") { Description = "Architecture: " + string.Join(", ", TrainingPresets.Names), DefaultValueFactory = _ => "tiny" };
        config.AcceptOnlyFromAmong([.. TrainingPresets.Names]);
        var steps = new Option<int>("--steps") { Description = "Optimisation steps", DefaultValueFactory = _ => 1000 };
        var seqLen = new Option<int>("--seq-len") { Description = "Tokens per training sequence", DefaultValueFactory = _ => 128 };
        var batch = new Option<int>("--batch") { Description = "Sequences per step", DefaultValueFactory = _ => 8 };
        var lr = new Option<double>("--lr") { Description = "Peak learning rate (5% linear warm-up, cosine to 10%)", DefaultValueFactory = _ => 3e-3 };
        var seed = new Option<ulong>("--seed") { Description = "Seed of the initial weights and the batches", DefaultValueFactory = _ => 0 };
        var valid = new Option<FileInfo?>("--valid") { Description = "Validation text (default: the corpus' last 5%)" };
        var every = new Option<int>("--checkpoint-every") { Description = "Steps between checkpoints and validation", DefaultValueFactory = _ => 200 };
        var resume = new Option<FileInfo?>("--resume") { Description = "Checkpoint to continue (its architecture and options win; the folder's tokenizer is kept)" };
        var tokenizer = new Option<string>("--tokenizer")
        {
            Description = "synthetic: the builder's built-in vocabulary; corpus: BPE merges learned from the training text fill the vocabulary",
            DefaultValueFactory = _ => "synthetic",
        };
        tokenizer.AcceptOnlyFromAmong("synthetic", "corpus");
        var command = new Command("train", "Train a Gemma 3 decoder on a text corpus (CPU, OpenBLAS)")
        {
            corpus, output, config, steps, seqLen, batch, lr, seed, valid, every, resume, tokenizer,
        };
        Option[] fixedByCheckpoint = [config, steps, seqLen, batch, lr, seed, tokenizer];
        command.SetAction(result =>
        {
            FileInfo? checkpoint = result.GetValue(resume);
            if (checkpoint is not null && fixedByCheckpoint.FirstOrDefault(o => result.GetResult(o) is { Implicit: false }) is { } clash)
            {
                throw new UsageException($"--resume takes {clash.Name} from the checkpoint; drop {clash.Name}");
            }

            var options = new TrainingOptions
            {
                Steps = result.GetValue(steps), SequenceLength = result.GetValue(seqLen), BatchSize = result.GetValue(batch),
                LearningRate = result.GetValue(lr), Seed = result.GetValue(seed),
            };
            var request = new TrainRequest(result.GetValue(corpus)!, result.GetValue(valid), result.GetValue(output)!,
                TrainingPresets.Find(result.GetValue(config)!)!, options, result.GetValue(every), checkpoint, result.GetValue(tokenizer) == "corpus");
            return Run(request);
        });
        return command;
    }

    private sealed record TrainRequest(FileInfo Corpus, FileInfo? Validation, DirectoryInfo Output, Gemma3Config Config,
        TrainingOptions Options, int CheckpointEvery, FileInfo? Resume, bool CorpusTokenizer);

    private static int Run(TrainRequest request)
    {
        Validate(request);
        Checkpoint.Contents? saved = request.Resume is null ? null : LoadCheckpoint(request.Resume);
        Gemma3Config config = saved?.Parameters.Config ?? request.Config;
        string text = File.ReadAllText(request.Corpus.FullName);
        GemmaTokenizer tokenizer = PrepareTokenizer(request, config, text);
        int[] tokens = CorpusTokens.Encode(tokenizer, text);
        (int[] train, int[] validation) = request.Validation is { } file
            ? (tokens, CorpusTokens.Encode(tokenizer, File.ReadAllText(file.FullName)))
            : CorpusTokens.SplitTail(tokens, 0.05);
        Console.Error.WriteLine($"{train.Length:N0} training tokens, {validation.Length:N0} validation tokens, {config.ParameterCount:N0} parameters");

        ModelTrainer trainer = CreateTrainer(saved, config, request.Options, train);
        if (validation.Length <= trainer.Options.SequenceLength)
        {
            throw new UsageException($"the validation text has {validation.Length} tokens; one window of {trainer.Options.SequenceLength} needs more");
        }

        string checkpointPath = Path.Combine(request.Output.FullName, CheckpointFile);
        var loop = new TrainingLoop(trainer, validation, checkpointPath, Path.Combine(request.Output.FullName, "training_log.csv"), request.CheckpointEvery);
        double validationLoss;
        try
        {
            validationLoss = loop.Run();
        }
        catch (InvalidOperationException e)
        {
            // A diverged run (non-finite loss): the last checkpoint, if any, predates it.
            Console.Error.WriteLine($"error: {e.Message}");
            return CommandLine.Failed;
        }

        trainer.Export(request.Output.FullName, writeTokenizer: false);
        Console.Error.WriteLine($"Wrote {request.Output.FullName}");
        Console.WriteLine($"validation loss: {validationLoss:F4}, perplexity: {Math.Exp(validationLoss):F2}");
        return CommandLine.Ok;
    }

    /// <summary>
    /// A new run writes the tokenizer first (the export keeps it, so ids mean the same at serving
    /// time); a resumed run reads the one its folder already holds.
    /// </summary>
    private static GemmaTokenizer PrepareTokenizer(TrainRequest request, Gemma3Config config, string corpus)
    {
        string folder = request.Output.FullName;
        if (request.Resume is not null)
        {
            return File.Exists(Path.Combine(folder, GemmaTokenizerWriter.ModelFileName))
                ? GemmaTokenizer.Load(folder)
                : throw new UsageException($"--resume: '{folder}' holds no {GemmaTokenizerWriter.ModelFileName} (pass the run's --out)");
        }

        if (request.CorpusTokenizer)
        {
            Console.Error.WriteLine($"Learning {config.VocabSize:N0} BPE pieces from the corpus");
        }

        GemmaTokenizerWriter.Write(folder, config.VocabSize, request.CorpusTokenizer ? corpus : null);
        return GemmaTokenizer.Load(folder);
    }

    private static ModelTrainer CreateTrainer(Checkpoint.Contents? saved, Gemma3Config config, TrainingOptions options, int[] train)
    {
        try
        {
            return saved is null ? ModelTrainer.Start(config, options, train) : ModelTrainer.Resume(saved, train);
        }
        catch (ArgumentException e)
        {
            // The corpus is shorter than one training window.
            throw new UsageException(e.Message);
        }
    }

    private static void Validate(TrainRequest request)
    {
        if (!request.Corpus.Exists)
        {
            throw new UsageException($"corpus not found: {request.Corpus.FullName}");
        }

        if (request.Validation is { Exists: false } missing)
        {
            throw new UsageException($"validation text not found: {missing.FullName}");
        }

        if (request.Resume is { Exists: false } checkpoint)
        {
            throw new UsageException($"checkpoint not found: {checkpoint.FullName}");
        }

        if (request.Resume is null && request.Output.Exists && request.Output.EnumerateFileSystemInfos().Any())
        {
            throw new UsageException($"'{request.Output.FullName}' exists and is not empty (pass --resume to continue a run)");
        }

        if (request.CheckpointEvery < 1)
        {
            throw new UsageException($"--checkpoint-every must be at least 1, got {request.CheckpointEvery}");
        }

        try
        {
            request.Options.Validate();
        }
        catch (ArgumentException e)
        {
            throw new UsageException(e.Message);
        }

        if (request.Resume is null && request.Options.SequenceLength > request.Config.MaxPositionEmbeddings)
        {
            throw new UsageException($"--seq-len {request.Options.SequenceLength} exceeds the context of the config ({request.Config.MaxPositionEmbeddings})");
        }
    }

    private static Checkpoint.Contents LoadCheckpoint(FileInfo checkpoint)
    {
        try
        {
            return Checkpoint.Load(checkpoint.FullName);
        }
        catch (InvalidDataException e)
        {
            throw new UsageException(e.Message);
        }
    }
}
