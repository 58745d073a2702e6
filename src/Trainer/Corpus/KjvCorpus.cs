using System.Text;
using System.Text.RegularExpressions;

namespace Serving.Trainer.Corpus;

/// <summary>Training and validation text: whole books apart, one verse a line.</summary>
public sealed record CorpusSplit(string Train, string Validation, int TrainVerses, int ValidationVerses);

/// <summary>
/// The King James Bible as Debian's <c>bible-kjv</c> prints it (<c>bible -f "gen1:1-rev22:21"</c>:
/// 31,102 lines such as <c>Ge1:1 In the beginning…</c>): verse references stripped, whole books
/// held out for validation so no validation verse has its neighbours in training.
/// </summary>
public static partial class KjvCorpus
{
    /// <summary>
    /// 4.98% of the text's characters, one book of each kind: Ruth 0.31% (narrative),
    /// Ecclesiastes 0.69% (wisdom), Daniel 1.50% and Joel 0.26% (prophecy), Mark 1.91%
    /// (gospel), 1 John 0.31% (epistle). Names as the <c>bible</c> tool abbreviates them.
    /// </summary>
    public static IReadOnlyList<string> ValidationBooks { get; } = ["Ruth", "Eccl", "Dan", "Joel", "Mark", "1Jn"];

    [GeneratedRegex(@"^(?<book>[0-9]?[A-Za-z]+)[0-9]+:[0-9]+ (?<text>.*)$")]
    private static partial Regex VerseLine();

    /// <exception cref="InvalidDataException">A non-empty line is not <c>BookC:V text</c>.</exception>
    public static CorpusSplit Split(IEnumerable<string> bibleLines, IReadOnlyCollection<string> validationBooks)
    {
        var train = new StringBuilder();
        var validation = new StringBuilder();
        int trainVerses = 0, validationVerses = 0, lineNumber = 0;
        foreach (string line in bibleLines)
        {
            lineNumber++;
            if (line.Length == 0)
            {
                continue;
            }

            Match match = VerseLine().Match(line);
            if (!match.Success)
            {
                throw new InvalidDataException($"line {lineNumber} is not a verse ('Ge1:1 text'): {line[..Math.Min(line.Length, 60)]}");
            }

            bool held = validationBooks.Contains(match.Groups["book"].Value);
            (held ? validation : train).Append(match.Groups["text"].Value).Append('\n');
            _ = held ? validationVerses++ : trainVerses++;
        }

        return new CorpusSplit(train.ToString(), validation.ToString(), trainVerses, validationVerses);
    }
}
