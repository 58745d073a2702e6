using System.Text;
using System.Text.RegularExpressions;

namespace Serving.Runtime.Text;

/// <summary>
/// A synthetic vocabulary in the layout of OpenAI CLIP's: the 256 byte-level characters,
/// the same with the end-of-word suffix <c>&lt;/w&gt;</c>, the learned merges, then
/// <c>&lt;|startoftext|&gt;</c> and <c>&lt;|endoftext|&gt;</c> as the last two ids (49406 and
/// 49407 at the real size). Merges are learned from <see cref="TrainingCorpus"/>; a size
/// beyond what it yields is filled with unreachable <c>&lt;|unused…|&gt;</c> entries, so
/// real-shaped models keep the real embedding table.
/// </summary>
public sealed class ClipVocabulary
{
    public const string StartOfText = "<|startoftext|>";
    public const string EndOfText = "<|endoftext|>";
    public const string EndOfWord = "</w>";

    /// <summary>The CLIP pre-split (Hugging Face's CLIP tokenizer.json), applied after lowercasing.</summary>
    public const string SplitPattern = @"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

    private const int ByteUnits = 256;

    private ClipVocabulary(string[] tokens, IReadOnlyList<(string Left, string Right)> merges)
    {
        Tokens = tokens;
        Merges = merges;
    }

    /// <summary>Every token by id.</summary>
    public IReadOnlyList<string> Tokens { get; }

    /// <summary>Merge rules, highest priority first.</summary>
    public IReadOnlyList<(string Left, string Right)> Merges { get; }

    public int StartOfTextId => Tokens.Count - 2;

    public int EndOfTextId => Tokens.Count - 1;

    public static ClipVocabulary Build(int vocabSize)
    {
        int maxMerges = vocabSize - 2 * ByteUnits - 2;
        if (maxMerges < 0)
        {
            throw new ArgumentOutOfRangeException(nameof(vocabSize), $"a CLIP vocabulary needs at least {2 * ByteUnits + 2} tokens");
        }

        string[] bytes = ByteLevel.Characters;
        var tokens = new List<string>(vocabSize);
        tokens.AddRange(bytes);
        tokens.AddRange(bytes.Select(c => c + EndOfWord));
        var merges = LearnMerges(TrainingCorpus.Text, maxMerges);
        tokens.AddRange(merges.Select(m => m.Left + m.Right));
        for (int filler = 0; tokens.Count < vocabSize - 2; filler++)
        {
            tokens.Add($"<|unused{filler}|>");
        }

        tokens.Add(StartOfText);
        tokens.Add(EndOfText);
        return new ClipVocabulary([.. tokens], merges);
    }

    /// <summary>The words the CLIP tokenizer sees: lowercased, split by <see cref="SplitPattern"/>.</summary>
    internal static IEnumerable<string> Words(string text) =>
        Regex.Matches(text.ToLowerInvariant(), SplitPattern).Select(match => match.Value);

    /// <summary>Greedy BPE: the most frequent adjacent pair each step, ties by ordinal order of (left, right).</summary>
    private static List<(string Left, string Right)> LearnMerges(string text, int maxMerges)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string word in Words(text))
        {
            counts[word] = counts.GetValueOrDefault(word) + 1;
        }

        var words = counts.OrderBy(pair => pair.Key, StringComparer.Ordinal)
            .Select(pair => (Symbols: Symbols(pair.Key), pair.Value)).ToList();
        var merges = new List<(string, string)>();
        var known = new HashSet<string>(StringComparer.Ordinal);
        while (merges.Count < maxMerges && BestPair(words) is (string left, string right))
        {
            if (known.Add(left + right))
            {
                merges.Add((left, right));
            }

            foreach (var (symbols, _) in words)
            {
                Merge(symbols, left, right);
            }
        }

        return merges;
    }

    private static List<string> Symbols(string word)
    {
        string mapped = ByteLevel.Encode(word);
        var symbols = mapped.Select(c => c.ToString()).ToList();
        symbols[^1] += EndOfWord;
        return symbols;
    }

    private static (string, string)? BestPair(List<(List<string> Symbols, int Count)> words)
    {
        var pairs = new Dictionary<(string, string), int>();
        foreach (var (symbols, count) in words)
        {
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                pairs[(symbols[i], symbols[i + 1])] = pairs.GetValueOrDefault((symbols[i], symbols[i + 1])) + count;
            }
        }

        (string, string)? best = null;
        int bestCount = 0;
        foreach (var (pair, count) in pairs)
        {
            if (count > bestCount || (count == bestCount && Compare(pair, best!.Value) < 0))
            {
                best = pair;
                bestCount = count;
            }
        }

        return best;
    }

    private static int Compare((string Left, string Right) a, (string Left, string Right) b)
    {
        int left = string.CompareOrdinal(a.Left, b.Left);
        return left != 0 ? left : string.CompareOrdinal(a.Right, b.Right);
    }

    private static void Merge(List<string> symbols, string left, string right)
    {
        for (int i = 0; i + 1 < symbols.Count; i++)
        {
            if (symbols[i] == left && symbols[i + 1] == right)
            {
                symbols[i] = left + right;
                symbols.RemoveAt(i + 1);
            }
        }
    }
}

/// <summary>GPT-2's byte-to-character map: printable bytes stand for themselves, the rest map above U+0100.</summary>
internal static class ByteLevel
{
    /// <summary>The character of each byte, in byte-value order of the printable ranges first (GPT-2's order).</summary>
    public static string[] Characters { get; } = BuildOrder();

    private static readonly char[] ByByte = BuildMap();

    public static string Encode(string text)
    {
        var builder = new StringBuilder();
        foreach (byte b in Encoding.UTF8.GetBytes(text))
        {
            builder.Append(ByByte[b]);
        }

        return builder.ToString();
    }

    private static bool IsPrintable(int b) => b is >= '!' and <= '~' or >= 0xA1 and <= 0xAC or >= 0xAE and <= 0xFF;

    private static char[] BuildMap()
    {
        var map = new char[256];
        int next = 256;
        for (int b = 0; b < 256; b++)
        {
            map[b] = IsPrintable(b) ? (char)b : (char)next++;
        }

        return map;
    }

    private static string[] BuildOrder()
    {
        char[] map = BuildMap();
        var printable = Enumerable.Range(0, 256).Where(IsPrintable);
        var rest = Enumerable.Range(0, 256).Where(b => !IsPrintable(b));
        return printable.Concat(rest).Select(b => map[b].ToString()).ToArray();
    }
}
