using System.Text;
using System.Text.Json;
using Google.Protobuf;
using Microsoft.ML.Tokenizers;
using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>
/// Gemma's tokenizer, read from a Hugging Face export folder: <c>tokenizer.model</c>
/// (SentencePiece BPE, encoded by Microsoft.ML.Tokenizers) and <c>tokenizer_config.json</c>
/// (BOS/EOS policy, special tokens, chat template). Encodes like Hugging Face's
/// <c>GemmaTokenizerFast</c>: added tokens such as <c>&lt;start_of_turn&gt;</c> in the text
/// become single ids. Ids come from the files, so real Gemma folders load too. Immutable
/// and thread-safe.
/// </summary>
public sealed class GemmaTokenizer
{
    private readonly SentencePieceTokenizer _sentencePiece;
    private readonly AddedTokenMatcher _addedTokens;
    private readonly PieceDecoder _decoder;

    private GemmaTokenizer(SentencePieceTokenizer sentencePiece, PieceDecoder decoder, AddedTokenMatcher addedTokens, TokenizerConfig config,
        ModelProto model)
    {
        _sentencePiece = sentencePiece;
        _decoder = decoder;
        _addedTokens = addedTokens;
        VocabSize = decoder.Count;
        (BosId, EosId, PadId, UnkId) = (config.BosId, config.EosId, config.PadId, config.UnkId);
        (StartOfTurnId, EndOfTurnId) = (config.StartOfTurnId, config.EndOfTurnId);
        (AddBosToken, AddEosToken, ChatTemplateJinja) = (config.AddBosToken, config.AddEosToken, config.ChatTemplate);
        MaxBytesPerToken = BytesPerTokenBound(model, config);
    }

    /// <summary>
    /// The most UTF-8 bytes of text one token can stand for: the longest piece or added token, at least 4 (an unknown
    /// character). Null when the normalizer may shrink text
    /// (a charsmap, collapsed whitespace), which leaves no such bound. Gemma 3's vocabulary gives a few tens of bytes.
    /// </summary>
    public int? MaxBytesPerToken { get; }

    /// <summary>
    /// True when a text of <paramref name="utf8Bytes"/> bytes must encode to more than <paramref name="maxTokens"/> tokens,
    /// known without encoding it (encoding costs about 1.5 s per MB).
    /// </summary>
    public bool IsSurelyLongerThan(long utf8Bytes, int maxTokens) => MaxBytesPerToken is { } max && utf8Bytes > (long)maxTokens * max;

    public int VocabSize { get; }
    public int BosId { get; }
    public int EosId { get; }
    public int PadId { get; }
    public int UnkId { get; }
    /// <summary>The id of <c>&lt;start_of_turn&gt;</c>, or null when the vocabulary has none.</summary>
    public int? StartOfTurnId { get; }
    /// <summary>The id of <c>&lt;end_of_turn&gt;</c> (Gemma's end of a chat reply), or null when the vocabulary has none.</summary>
    public int? EndOfTurnId { get; }
    public bool AddBosToken { get; }
    public bool AddEosToken { get; }
    /// <summary>The Jinja chat template of <c>tokenizer_config.json</c>, or null when absent.</summary>
    public string? ChatTemplateJinja { get; }

    /// <summary>Loads the tokenizer of the export in <paramref name="folder"/>.</summary>
    /// <exception cref="FileNotFoundException"><c>tokenizer.model</c> or <c>tokenizer_config.json</c> is missing.</exception>
    /// <exception cref="InvalidDataException">One of them cannot be parsed; the message names the file.</exception>
    public static GemmaTokenizer Load(string folder)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        string modelPath = Path.Combine(folder, GemmaTokenizerWriter.ModelFileName);
        byte[] modelBytes = ReadRequired(modelPath);
        ModelProto model = ParseModel(modelPath, modelBytes);
        string configPath = Path.Combine(folder, GemmaTokenizerWriter.ConfigFileName);
        TokenizerConfig config = TokenizerConfig.Parse(configPath, ReadRequired(configPath), model);

        SentencePieceTokenizer sentencePiece;
        try
        {
            using var stream = new MemoryStream(modelBytes, writable: false);
            sentencePiece = SentencePieceTokenizer.Create(stream, false, false);
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException or InvalidProtocolBufferException)
        {
            throw new InvalidDataException($"'{modelPath}' is not a usable SentencePiece model: {e.Message}", e);
        }

        return new GemmaTokenizer(sentencePiece, new PieceDecoder(model, config.SpecialIds),
            new AddedTokenMatcher(config.AddedTokens), config, model);
    }

    /// <summary>
    /// Encodes <paramref name="text"/>. With <paramref name="addSpecialTokens"/>, adds BOS (and
    /// EOS) as <c>tokenizer_config.json</c> asks; added tokens in the text are recognised
    /// either way, as Hugging Face does.
    /// </summary>
    public int[] Encode(string text, bool addSpecialTokens = true)
    {
        ArgumentNullException.ThrowIfNull(text);
        var ids = new List<int>(text.Length / 3 + 2);
        if (addSpecialTokens && AddBosToken)
        {
            ids.Add(BosId);
        }

        int plainStart = 0;
        for (int i = 0; i < text.Length;)
        {
            int id = _addedTokens.Match(text, i, out int length);
            if (id < 0)
            {
                i++;
                continue;
            }

            EncodePlain(text.AsSpan(plainStart, i - plainStart), ids);
            ids.Add(id);
            i += length;
            plainStart = i;
        }

        EncodePlain(text.AsSpan(plainStart), ids);
        if (addSpecialTokens && AddEosToken)
        {
            ids.Add(EosId);
        }

        return [.. ids];
    }

    /// <summary>Decodes <paramref name="ids"/>; with <paramref name="skipSpecialTokens"/>, special tokens (BOS, EOS, turn markers…) are left out.</summary>
    /// <exception cref="ArgumentOutOfRangeException">An id is outside the vocabulary.</exception>
    public string Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens = false)
    {
        var text = new StringBuilder(ids.Length * 4);
        _decoder.Decode(ids, skipSpecialTokens, atSequenceStart: true, text);
        return text.ToString();
    }

    /// <summary>Whether <paramref name="id"/> is a special token (left out by <c>skipSpecialTokens</c>).</summary>
    public bool IsSpecial(int id) => _decoder.IsSpecial(id);

    /// <summary>How many ids the tokenizer knows.</summary>
    public int VocabularySize => _decoder.Count;

    /// <summary>The UTF-8 bytes token <paramref name="id"/> adds to text (a byte piece: its one byte); null for added and special tokens.</summary>
    public byte[]? TokenBytes(int id) => _decoder.TextBytes(id);

    /// <summary>A streaming decoder for one generated sequence.</summary>
    public IncrementalDetokenizer CreateDetokenizer(bool skipSpecialTokens = true) => new(_decoder, skipSpecialTokens);

    private static int? BytesPerTokenBound(ModelProto model, TokenizerConfig config)
    {
        NormalizerSpec normalizer = model.NormalizerSpec;
        if (normalizer.RemoveExtraWhitespaces || !normalizer.PrecompiledCharsmap.IsEmpty || normalizer.Name is not ("" or "identity"))
        {
            return null;
        }

        int max = 4;
        foreach (ModelProto.Types.SentencePiece piece in model.Pieces)
        {
            // A byte piece (<0x41>) stands for one byte; any other for at most its own text (its U+2581, 3 bytes, for a
            // space, or for a U+2581 in the input).
            int bytes = piece.Type == PieceType.Byte ? 1 : Encoding.UTF8.GetByteCount(piece.Piece);
            max = Math.Max(max, bytes);
        }

        foreach (string content in config.AddedTokens.Keys)
        {
            max = Math.Max(max, Encoding.UTF8.GetByteCount(content));
        }

        return max;
    }

    private void EncodePlain(ReadOnlySpan<char> text, List<int> ids)
    {
        if (!text.IsEmpty)
        {
            ids.AddRange(_sentencePiece.EncodeToIds(text, addBeginningOfSentence: false, addEndOfSentence: false,
                considerPreTokenization: true, considerNormalization: true));
        }
    }

    private static byte[] ReadRequired(string path)
    {
        if (!File.Exists(path))
        {
            throw new FileNotFoundException($"Tokenizer file '{path}' does not exist.", path);
        }

        return File.ReadAllBytes(path);
    }

    private static ModelProto ParseModel(string path, byte[] bytes)
    {
        ModelProto model;
        try
        {
            model = ModelProto.Parser.ParseFrom(bytes);
        }
        catch (InvalidProtocolBufferException e)
        {
            throw new InvalidDataException($"'{path}' is not a SentencePiece model: {e.Message}", e);
        }

        if (model.Pieces.Count == 0 || model.TrainerSpec is null || model.NormalizerSpec is null)
        {
            throw new InvalidDataException($"'{path}' is not a SentencePiece model: it has no pieces, trainer spec or normalizer spec.");
        }

        if (model.TrainerSpec.ModelType != TrainerSpec.Types.ModelType.Bpe)
        {
            throw new InvalidDataException($"'{path}' is a {model.TrainerSpec.ModelType} SentencePiece model; Gemma tokenizers are BPE.");
        }

        return model;
    }
}
