using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using Microsoft.ML.Tokenizers;
using Serving.Runtime.Models;

namespace Serving.Runtime.Text;

/// <summary>
/// CLIP's tokenizer over Microsoft.ML.Tokenizers (REFERENCE §6): NFC, whitespace collapsed,
/// lowercase, the CLIP split, byte-level BPE with <c>&lt;/w&gt;</c>; every text becomes
/// <c>&lt;|startoftext|&gt; … &lt;|endoftext|&gt;</c>, cut to <see cref="MaxLength"/> tokens with the end token kept.
/// </summary>
public sealed partial class ClipTokenizer
{
    private readonly BpeTokenizer _bpe;

    private ClipTokenizer(BpeTokenizer bpe, int startId, int endId, int maxLength)
    {
        _bpe = bpe;
        StartOfTextId = startId;
        EndOfTextId = endId;
        MaxLength = maxLength;
    }

    public int StartOfTextId { get; }

    public int EndOfTextId { get; }

    /// <summary>Tokens per text including start and end (77 for every OpenAI CLIP).</summary>
    public int MaxLength { get; }

    /// <summary>Loads <c>vocab.json</c> and <c>merges.txt</c>; the special ids are read from the vocabulary.</summary>
    public static ClipTokenizer Load(string folder, int maxLength = ClipTokenizerWriter.ModelMaxLength)
    {
        string vocabPath = Path.Combine(folder, "vocab.json"), mergesPath = Path.Combine(folder, "merges.txt");
        foreach (string path in (string[])[vocabPath, mergesPath])
        {
            if (!File.Exists(path))
            {
                throw new ModelLoadException(path, "not found; a CLIP folder needs vocab.json and merges.txt");
            }
        }

        Dictionary<string, int> vocab;
        try
        {
            vocab = JsonSerializer.Deserialize<Dictionary<string, int>>(File.ReadAllBytes(vocabPath))
                ?? throw new ModelLoadException(vocabPath, "is null");
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(vocabPath, $"invalid JSON: {e.Message}", e);
        }

        int start = SpecialId(vocabPath, vocab, ClipVocabulary.StartOfText), end = SpecialId(vocabPath, vocab, ClipVocabulary.EndOfText);
        var specials = new Dictionary<string, int> { [ClipVocabulary.StartOfText] = start, [ClipVocabulary.EndOfText] = end };
        var options = new BpeOptions(vocab)
        {
            Merges = File.ReadLines(mergesPath).Where(line => line.Length > 0 && !line.StartsWith("#version", StringComparison.Ordinal)),
            ByteLevel = true,
            EndOfWordSuffix = ClipVocabulary.EndOfWord,
            UnknownToken = ClipVocabulary.EndOfText,
            SpecialTokens = specials,
            Normalizer = new ClipNormalizer(),
            PreTokenizer = new RegexPreTokenizer(new Regex(ClipVocabulary.SplitPattern, RegexOptions.Compiled), specials),
        };
        return new ClipTokenizer(BpeTokenizer.Create(options), start, end, maxLength);
    }

    /// <summary>Start token, at most <see cref="MaxLength"/> − 2 text tokens, end token.</summary>
    public int[] Encode(string text)
    {
        IReadOnlyList<int> ids = _bpe.EncodeToIds(text);
        int kept = Math.Min(ids.Count, MaxLength - 2);
        var result = new int[kept + 2];
        result[0] = StartOfTextId;
        for (int i = 0; i < kept; i++)
        {
            result[i + 1] = ids[i];
        }

        result[^1] = EndOfTextId;
        return result;
    }

    /// <summary>
    /// Row-major <c>[texts, longest]</c> ids padded with the end token (the text tower pools
    /// at the first one), and the matching attention mask (1 for tokens, 0 for padding).
    /// </summary>
    public (long[] Ids, long[] Mask, int Length) EncodeBatch(IReadOnlyList<string> texts)
    {
        var rows = texts.Select(Encode).ToArray();
        int length = rows.Max(row => row.Length);
        var ids = new long[rows.Length * length];
        var mask = new long[ids.Length];
        Array.Fill(ids, EndOfTextId);
        for (int r = 0; r < rows.Length; r++)
        {
            for (int i = 0; i < rows[r].Length; i++)
            {
                ids[r * length + i] = rows[r][i];
                mask[r * length + i] = 1;
            }
        }

        return (ids, mask, length);
    }

    private static int SpecialId(string path, Dictionary<string, int> vocab, string token) =>
        vocab.TryGetValue(token, out int id) ? id : throw new ModelLoadException(path, $"has no '{token}'");

    /// <summary>tokenizer.json's normalizer: NFC, runs of whitespace to one space, lowercase.</summary>
    private sealed partial class ClipNormalizer : Normalizer
    {
        public override string Normalize(string original) =>
            Whitespace().Replace(original.Normalize(NormalizationForm.FormC), " ").ToLowerInvariant();

        public override string Normalize(ReadOnlySpan<char> original) => Normalize(original.ToString());

        [GeneratedRegex(@"\s+")]
        private static partial Regex Whitespace();
    }
}
