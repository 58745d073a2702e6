using System.Text.Encodings.Web;
using System.Text.Json;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>
/// The Hugging Face side of a Gemma 3 export: <c>tokenizer.json</c> (what transformers.js and
/// the Rust tokenizers load), <c>tokenizer_config.json</c> and <c>special_tokens_map.json</c>,
/// laid out as google/gemma-3-*-it ships them.
/// </summary>
internal static class HuggingFaceTokenizerFiles
{
    // Gemma 3 ships transformers' "no limit" sentinel, int(1e30).
    private const string UnlimitedModelMaxLength = "1000000000000000019884624838656";

    private static readonly JsonWriterOptions WriterOptions = new()
    {
        Indented = true,
        IndentSize = 2,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    };

    public static void WriteTokenizerJson(string path, VocabularyPiece[] pieces)
    {
        using FileStream stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, WriterOptions);
        json.WriteStartObject();
        json.WriteString("version", "1.0");
        json.WriteNull("truncation");
        json.WriteNull("padding");
        json.WriteStartArray("added_tokens");
        for (int id = 0; id < pieces.Length; id++)
        {
            if (IsAddedToken(pieces[id].Type))
            {
                WriteTokenObject(json, pieces[id].Text, IsSpecial(pieces[id]), id);
            }
        }

        json.WriteEndArray();
        WriteReplace(json, "normalizer", " ", "\u2581");
        json.WriteNull("pre_tokenizer");
        WritePostProcessor(json);
        WriteDecoder(json);
        WriteModel(json, pieces);
        json.WriteEndObject();
    }

    public static void WriteTokenizerConfig(string path, VocabularyPiece[] pieces)
    {
        using FileStream stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, WriterOptions);
        json.WriteStartObject();
        json.WriteBoolean("add_bos_token", true);
        json.WriteBoolean("add_eos_token", false);
        json.WriteStartObject("added_tokens_decoder");
        for (int id = 0; id < pieces.Length; id++)
        {
            if (IsAddedToken(pieces[id].Type))
            {
                json.WritePropertyName(id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                WriteTokenObject(json, pieces[id].Text, IsSpecial(pieces[id]));
            }
        }

        json.WriteEndObject();
        json.WriteStartArray("additional_special_tokens");
        json.WriteStringValue(GemmaVocabulary.StartOfTurnToken);
        json.WriteStringValue(GemmaVocabulary.EndOfTurnToken);
        json.WriteEndArray();
        json.WriteString("bos_token", GemmaVocabulary.BosToken);
        json.WriteString("chat_template", ChatTemplate.Gemma3Jinja);
        json.WriteBoolean("clean_up_tokenization_spaces", false);
        json.WriteString("eos_token", GemmaVocabulary.EosToken);
        json.WritePropertyName("model_max_length");
        json.WriteRawValue(UnlimitedModelMaxLength);
        json.WriteString("pad_token", GemmaVocabulary.PadToken);
        json.WriteString("padding_side", "left");
        json.WriteStartObject("sp_model_kwargs");
        json.WriteEndObject();
        json.WriteBoolean("spaces_between_special_tokens", false);
        json.WriteString("tokenizer_class", "GemmaTokenizer");
        json.WriteString("unk_token", GemmaVocabulary.UnkToken);
        json.WriteBoolean("use_default_system_prompt", false);
        json.WriteEndObject();
    }

    public static void WriteSpecialTokensMap(string path)
    {
        using FileStream stream = File.Create(path);
        using var json = new Utf8JsonWriter(stream, WriterOptions);
        json.WriteStartObject();
        json.WriteStartArray("additional_special_tokens");
        json.WriteStringValue(GemmaVocabulary.StartOfTurnToken);
        json.WriteStringValue(GemmaVocabulary.EndOfTurnToken);
        json.WriteEndArray();
        foreach ((string key, string token) in (ReadOnlySpan<(string, string)>)[
            ("bos_token", GemmaVocabulary.BosToken), ("eos_token", GemmaVocabulary.EosToken),
            ("pad_token", GemmaVocabulary.PadToken), ("unk_token", GemmaVocabulary.UnkToken)])
        {
            json.WritePropertyName(key);
            json.WriteStartObject();
            json.WriteString("content", token);
            json.WriteBoolean("lstrip", false);
            json.WriteBoolean("normalized", false);
            json.WriteBoolean("rstrip", false);
            json.WriteBoolean("single_word", false);
            json.WriteEndObject();
        }

        json.WriteEndObject();
    }

    /// <summary>
    /// The merges Hugging Face's SentencePiece converter derives: for every piece that splits
    /// into two vocabulary pieces, each such pair, ordered by the merged piece's score
    /// (highest first), then by the pair's ids. Lowest rank first then reproduces
    /// SentencePiece's highest-score-first BPE.
    /// </summary>
    internal static List<(string Left, string Right)> DeriveMerges(VocabularyPiece[] pieces)
    {
        var ids = new Dictionary<string, int>(pieces.Length, StringComparer.Ordinal);
        for (int id = 0; id < pieces.Length; id++)
        {
            ids.TryAdd(pieces[id].Text, id);
        }

        var ranked = new List<(float Score, int Left, int Right)>();
        for (int id = 0; id < pieces.Length; id++)
        {
            string text = pieces[id].Text;
            if (pieces[id].Type != PieceType.Normal)
            {
                continue;
            }

            for (int split = 1; split < text.Length; split++)
            {
                if (!char.IsLowSurrogate(text[split]) &&
                    ids.TryGetValue(text[..split], out int left) && ids.TryGetValue(text[split..], out int right))
                {
                    ranked.Add((pieces[id].Score, left, right));
                }
            }
        }

        ranked.Sort((a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score)
            : a.Left != b.Left ? a.Left.CompareTo(b.Left) : a.Right.CompareTo(b.Right));
        return ranked.ConvertAll(m => (pieces[m.Left].Text, pieces[m.Right].Text));
    }

    private static bool IsAddedToken(PieceType type) =>
        type is PieceType.Control or PieceType.Unknown or PieceType.UserDefined;

    // As in Gemma 3: pad/eos/bos/unk and the turn markers are special (skipped when decoding
    // with skip_special_tokens); <mask> and <unusedN> are added but not special.
    private static bool IsSpecial(VocabularyPiece piece) =>
        piece.Type is PieceType.Control or PieceType.Unknown ||
        piece.Text is GemmaVocabulary.StartOfTurnToken or GemmaVocabulary.EndOfTurnToken;

    /// <summary>An added token as both files write it; tokenizer.json's list also carries the id.</summary>
    private static void WriteTokenObject(Utf8JsonWriter json, string content, bool special, int? id = null)
    {
        json.WriteStartObject();
        if (id is { } value)
        {
            json.WriteNumber("id", value);
        }

        json.WriteString("content", content);
        json.WriteBoolean("lstrip", false);
        json.WriteBoolean("normalized", false);
        json.WriteBoolean("rstrip", false);
        json.WriteBoolean("single_word", false);
        json.WriteBoolean("special", special);
        json.WriteEndObject();
    }

    private static void WriteReplace(Utf8JsonWriter json, string? propertyName, string pattern, string content)
    {
        if (propertyName is null)
        {
            json.WriteStartObject();
        }
        else
        {
            json.WriteStartObject(propertyName);
        }

        json.WriteString("type", "Replace");
        json.WriteStartObject("pattern");
        json.WriteString("String", pattern);
        json.WriteEndObject();
        json.WriteString("content", content);
        json.WriteEndObject();
    }

    private static void WritePostProcessor(Utf8JsonWriter json)
    {
        json.WriteStartObject("post_processor");
        json.WriteString("type", "TemplateProcessing");
        json.WriteStartArray("single");
        WriteTemplatePiece(json, "SpecialToken", GemmaVocabulary.BosToken, 0);
        WriteTemplatePiece(json, "Sequence", "A", 0);
        json.WriteEndArray();
        json.WriteStartArray("pair");
        WriteTemplatePiece(json, "SpecialToken", GemmaVocabulary.BosToken, 0);
        WriteTemplatePiece(json, "Sequence", "A", 0);
        WriteTemplatePiece(json, "SpecialToken", GemmaVocabulary.BosToken, 1);
        WriteTemplatePiece(json, "Sequence", "B", 1);
        json.WriteEndArray();
        json.WriteStartObject("special_tokens");
        json.WriteStartObject(GemmaVocabulary.BosToken);
        json.WriteString("id", GemmaVocabulary.BosToken);
        json.WriteStartArray("ids");
        json.WriteNumberValue(GemmaVocabulary.BosId);
        json.WriteEndArray();
        json.WriteStartArray("tokens");
        json.WriteStringValue(GemmaVocabulary.BosToken);
        json.WriteEndArray();
        json.WriteEndObject();
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteTemplatePiece(Utf8JsonWriter json, string kind, string id, int typeId)
    {
        json.WriteStartObject();
        json.WriteStartObject(kind);
        json.WriteString("id", id);
        json.WriteNumber("type_id", typeId);
        json.WriteEndObject();
        json.WriteEndObject();
    }

    private static void WriteDecoder(Utf8JsonWriter json)
    {
        json.WriteStartObject("decoder");
        json.WriteString("type", "Sequence");
        json.WriteStartArray("decoders");
        WriteReplace(json, null, "\u2581", " ");
        json.WriteStartObject();
        json.WriteString("type", "ByteFallback");
        json.WriteEndObject();
        json.WriteStartObject();
        json.WriteString("type", "Fuse");
        json.WriteEndObject();
        json.WriteEndArray();
        json.WriteEndObject();
    }

    private static void WriteModel(Utf8JsonWriter json, VocabularyPiece[] pieces)
    {
        json.WriteStartObject("model");
        json.WriteString("type", "BPE");
        json.WriteNull("dropout");
        json.WriteString("unk_token", GemmaVocabulary.UnkToken);
        json.WriteNull("continuing_subword_prefix");
        json.WriteNull("end_of_word_suffix");
        json.WriteBoolean("fuse_unk", true);
        json.WriteBoolean("byte_fallback", true);
        json.WriteBoolean("ignore_merges", false);
        json.WriteStartObject("vocab");
        for (int id = 0; id < pieces.Length; id++)
        {
            json.WriteNumber(pieces[id].Text, id);
        }

        json.WriteEndObject();
        json.WriteStartArray("merges");
        foreach ((string left, string right) in DeriveMerges(pieces))
        {
            json.WriteStartArray();
            json.WriteStringValue(left);
            json.WriteStringValue(right);
            json.WriteEndArray();
        }

        json.WriteEndArray();
        json.WriteEndObject();
    }
}
