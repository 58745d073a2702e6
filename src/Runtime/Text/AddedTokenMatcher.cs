namespace Serving.Runtime.Text;

/// <summary>
/// Finds added tokens (<c>&lt;bos&gt;</c>, <c>&lt;start_of_turn&gt;</c>, <c>&lt;unusedN&gt;</c>, …)
/// in raw text, leftmost-longest as Hugging Face's added-vocabulary splitter does, so they
/// encode as single ids. Gemma 3 has ~6,000 such tokens (262,144 with our padding), too many
/// for one regex alternation: we probe a span-keyed dictionary only at characters that can
/// start a token, once per distinct token length.
/// </summary>
internal sealed class AddedTokenMatcher
{
    private readonly Dictionary<string, int>.AlternateLookup<ReadOnlySpan<char>> _lookup;
    private readonly HashSet<char> _firstChars = [];
    private readonly int[] _lengthsLongestFirst;

    public AddedTokenMatcher(IReadOnlyDictionary<string, int> tokens)
    {
        var byContent = new Dictionary<string, int>(tokens.Count, StringComparer.Ordinal);
        var lengths = new SortedSet<int>(Comparer<int>.Create((a, b) => b.CompareTo(a)));
        foreach ((string content, int id) in tokens)
        {
            if (content.Length > 0)
            {
                byContent[content] = id;
                _firstChars.Add(content[0]);
                lengths.Add(content.Length);
            }
        }

        _lookup = byContent.GetAlternateLookup<ReadOnlySpan<char>>();
        _lengthsLongestFirst = [.. lengths];
    }

    /// <summary>The id of the longest added token starting at <paramref name="start"/>, or -1.</summary>
    public int Match(ReadOnlySpan<char> text, int start, out int length)
    {
        length = 0;
        if (!_firstChars.Contains(text[start]))
        {
            return -1;
        }

        foreach (int candidate in _lengthsLongestFirst)
        {
            if (start + candidate <= text.Length && _lookup.TryGetValue(text.Slice(start, candidate), out int id))
            {
                length = candidate;
                return id;
            }
        }

        return -1;
    }
}
