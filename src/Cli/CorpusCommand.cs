using System.CommandLine;
using Serving.Trainer.Corpus;

namespace Serving.Cli;

/// <summary><c>serving corpus kjv --bible FILE --out DIR</c>: train.txt and valid.txt from the bible tool's output.</summary>
internal static class CorpusCommand
{
    public static Command Create()
    {
        var bible = new Option<FileInfo>("--bible") { Description = "Output of: bible -f \"gen1:1-rev22:21\" (Debian's bible-kjv)", Required = true };
        var output = new Option<DirectoryInfo>("--out") { Description = "Folder for train.txt and valid.txt", Required = true };
        var kjv = new Command("kjv", "King James Bible: strip verse references, hold out " + string.Join(", ", KjvCorpus.ValidationBooks) + " (~5%)")
        {
            bible, output,
        };
        kjv.SetAction(result => Run(result.GetValue(bible)!, result.GetValue(output)!));
        return new Command("corpus", "Prepare training text") { kjv };
    }

    private static int Run(FileInfo bible, DirectoryInfo output)
    {
        if (!bible.Exists)
        {
            throw new UsageException($"file not found: {bible.FullName}");
        }

        CorpusSplit split;
        try
        {
            split = KjvCorpus.Split(File.ReadLines(bible.FullName), KjvCorpus.ValidationBooks);
        }
        catch (InvalidDataException e)
        {
            throw new UsageException($"{bible.FullName}: {e.Message}");
        }

        if (split.ValidationVerses == 0)
        {
            throw new UsageException($"{bible.FullName} holds none of the validation books; pass the whole Bible");
        }

        output.Create();
        File.WriteAllText(Path.Combine(output.FullName, "train.txt"), split.Train);
        File.WriteAllText(Path.Combine(output.FullName, "valid.txt"), split.Validation);
        Console.WriteLine($"train: {split.TrainVerses} verses, {split.Train.Length} characters; valid: {split.ValidationVerses} verses, {split.Validation.Length} characters");
        return CommandLine.Ok;
    }
}
