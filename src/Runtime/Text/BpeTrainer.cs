namespace Serving.Runtime.Text;

/// <summary>
/// A small, deterministic byte-pair-encoding trainer in the style of SentencePiece's BPE:
/// words start with "▁", letters and punctuation form separate units (as
/// <c>split_by_unicode_script</c> does), digits stay single (<c>split_digits</c>), and each
/// step merges the most frequent adjacent pair, ties broken by ordinal order so the same
/// text always yields the same merges.
/// </summary>
internal static class BpeTrainer
{
    public const char WordBoundary = '\u2581';
    private const int MaxPieceLength = 16;

    /// <summary>
    /// Returns the merged pieces in the order they were learned (highest score first). A text
    /// with fewer distinct pairs than <paramref name="numMerges"/> throws, unless
    /// <paramref name="stopWhenExhausted"/>: then it returns the merges it found.
    /// </summary>
    public static IReadOnlyList<string> Train(string text, int numMerges, bool stopWhenExhausted = false)
    {
        List<Unit> units = CountUnits(text);
        var vocabulary = new HashSet<string>(StringComparer.Ordinal);
        var merged = new List<string>(numMerges);
        while (merged.Count < numMerges)
        {
            if (!TryFindBestPair(units, out string left, out string right))
            {
                if (stopWhenExhausted)
                {
                    break;
                }

                throw new InvalidOperationException(
                    $"The training text yields only {merged.Count} merges; {numMerges} are needed.");
            }

            string piece = left + right;
            if (vocabulary.Add(piece))
            {
                merged.Add(piece);
            }

            foreach (Unit unit in units)
            {
                ApplyMerge(unit.Symbols, left, right);
            }
        }

        return merged;
    }

    private sealed record Unit(List<string> Symbols, int Count);

    private static List<Unit> CountUnits(string text)
    {
        var counts = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (string word in text.Split((char[])[' ', '\n', '\r', '\t'], StringSplitOptions.RemoveEmptyEntries))
        {
            int start = 0;
            bool isFirst = true;
            while (start < word.Length)
            {
                int end = start + 1;
                CharClass cls = Classify(word[start]);
                while (cls != CharClass.Digit && end < word.Length && Classify(word[end]) == cls)
                {
                    end++;
                }

                string unit = (isFirst ? WordBoundary.ToString() : "") + word[start..end];
                counts[unit] = counts.GetValueOrDefault(unit) + 1;
                isFirst = false;
                start = end;
            }
        }

        var units = new List<Unit>(counts.Count);
        foreach (string key in counts.Keys.Order(StringComparer.Ordinal))
        {
            units.Add(new Unit(key.Select(c => c.ToString()).ToList(), counts[key]));
        }

        return units;
    }

    private enum CharClass
    {
        Letter,
        Digit,
        Other,
    }

    private static CharClass Classify(char c) =>
        char.IsLetter(c) || c == '\'' ? CharClass.Letter : char.IsDigit(c) ? CharClass.Digit : CharClass.Other;

    private static bool TryFindBestPair(List<Unit> units, out string bestLeft, out string bestRight)
    {
        var pairCounts = new Dictionary<(string Left, string Right), int>();
        foreach (Unit unit in units)
        {
            List<string> symbols = unit.Symbols;
            for (int i = 1; i < symbols.Count; i++)
            {
                if (IsDigit(symbols[i - 1]) || IsDigit(symbols[i]) ||
                    symbols[i - 1].Length + symbols[i].Length > MaxPieceLength)
                {
                    continue;
                }

                var pair = (symbols[i - 1], symbols[i]);
                pairCounts[pair] = pairCounts.GetValueOrDefault(pair) + unit.Count;
            }
        }

        (bestLeft, bestRight) = ("", "");
        int bestCount = 0;
        foreach (((string left, string right), int count) in pairCounts)
        {
            if (count > bestCount || (count == bestCount && IsOrdinalBefore(left, right, bestLeft, bestRight)))
            {
                (bestLeft, bestRight, bestCount) = (left, right, count);
            }
        }

        return bestCount > 0;
    }

    private static bool IsDigit(string symbol) => symbol.Length == 1 && char.IsDigit(symbol[0]);

    private static bool IsOrdinalBefore(string left, string right, string otherLeft, string otherRight)
    {
        int byLeft = string.CompareOrdinal(left, otherLeft);
        return byLeft < 0 || (byLeft == 0 && string.CompareOrdinal(right, otherRight) < 0);
    }

    private static void ApplyMerge(List<string> symbols, string left, string right)
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
