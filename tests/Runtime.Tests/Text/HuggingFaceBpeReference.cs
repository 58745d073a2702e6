using System.Text;
using System.Text.Json;

namespace Serving.Runtime.Tests.Text;

/// <summary>
/// An independent, deliberately plain reading of a Hugging Face <c>tokenizer.json</c> with a
/// BPE model, as the Rust tokenizers library applies it: split out added tokens
/// (leftmost-longest), apply the Replace normalizer, start from characters (or their UTF-8
/// byte pieces when absent and byte_fallback is set), and repeatedly merge the adjacent pair
/// with the lowest merge rank, leftmost first. Test-only; speed is irrelevant.
/// </summary>
internal sealed class HuggingFaceBpeReference
{
    private readonly Dictionary<string, int> _vocab = new(StringComparer.Ordinal);
    private readonly Dictionary<(string, string), int> _mergeRanks = [];
    private readonly List<(string Content, int Id)> _addedTokens = [];
    private readonly string _replacePattern;
    private readonly string _replaceContent;
    private readonly bool _byteFallback;

    public HuggingFaceBpeReference(string tokenizerJsonPath)
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(tokenizerJsonPath));
        JsonElement root = document.RootElement;
        JsonElement model = root.GetProperty("model");
        Assert.Equal("BPE", model.GetProperty("type").GetString());
        _byteFallback = model.GetProperty("byte_fallback").GetBoolean();
        foreach (JsonProperty entry in model.GetProperty("vocab").EnumerateObject())
        {
            _vocab.Add(entry.Name, entry.Value.GetInt32());
        }

        int rank = 0;
        foreach (JsonElement merge in model.GetProperty("merges").EnumerateArray())
        {
            _mergeRanks.TryAdd((merge[0].GetString()!, merge[1].GetString()!), rank++);
        }

        foreach (JsonElement token in root.GetProperty("added_tokens").EnumerateArray())
        {
            _addedTokens.Add((token.GetProperty("content").GetString()!, token.GetProperty("id").GetInt32()));
        }

        JsonElement normalizer = root.GetProperty("normalizer");
        Assert.Equal("Replace", normalizer.GetProperty("type").GetString());
        _replacePattern = normalizer.GetProperty("pattern").GetProperty("String").GetString()!;
        _replaceContent = normalizer.GetProperty("content").GetString()!;
    }

    public int MergeCount => _mergeRanks.Count;

    /// <summary>Ids without the post-processor's BOS (add_special_tokens=False).</summary>
    public List<int> Encode(string text)
    {
        var ids = new List<int>();
        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            (string Content, int Id) best = default;
            foreach ((string content, int id) in _addedTokens)
            {
                if (content.Length > (best.Content?.Length ?? 0) && string.CompareOrdinal(text, i, content, 0, content.Length) == 0)
                {
                    best = (content, id);
                }
            }

            if (best.Content is null)
            {
                i++;
                continue;
            }

            ids.AddRange(EncodeWord(text[plainStart..i].Replace(_replacePattern, _replaceContent, StringComparison.Ordinal)));
            ids.Add(best.Id);
            i += best.Content.Length;
            plainStart = i;
        }

        ids.AddRange(EncodeWord(text[plainStart..].Replace(_replacePattern, _replaceContent, StringComparison.Ordinal)));
        return ids;
    }

    private List<int> EncodeWord(string word)
    {
        var symbols = new List<string>();
        var mergeable = new List<bool>();
        Span<byte> utf8 = stackalloc byte[4];
        foreach (Rune rune in word.EnumerateRunes())
        {
            string character = rune.ToString();
            if (_vocab.ContainsKey(character) || !_byteFallback)
            {
                symbols.Add(character);
                mergeable.Add(true);
                continue;
            }

            int length = rune.EncodeToUtf8(utf8);
            foreach (byte b in utf8[..length])
            {
                symbols.Add($"<0x{b:X2}>");
                mergeable.Add(false);
            }
        }

        while (true)
        {
            int bestAt = -1, bestRank = int.MaxValue;
            for (int i = 0; i + 1 < symbols.Count; i++)
            {
                if (mergeable[i] && mergeable[i + 1] &&
                    _mergeRanks.TryGetValue((symbols[i], symbols[i + 1]), out int rank) && rank < bestRank)
                {
                    (bestAt, bestRank) = (i, rank);
                }
            }

            if (bestAt < 0)
            {
                break;
            }

            symbols[bestAt] += symbols[bestAt + 1];
            symbols.RemoveAt(bestAt + 1);
            mergeable.RemoveAt(bestAt + 1);
        }

        return symbols.ConvertAll(s => _vocab.TryGetValue(s, out int id) ? id : _vocab["<unk>"]);
    }
}
