using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>One entry of a SentencePiece vocabulary: its text, BPE score and type.</summary>
internal readonly record struct VocabularyPiece(string Text, float Score, PieceType Type);

/// <summary>
/// The synthetic Gemma-style vocabulary: Gemma's special ids (pad 0, eos 1, bos 2, unk 3),
/// its chat-turn markers, the 256 byte-fallback pieces, a printable alphabet and the
/// merges <see cref="BpeTrainer"/> learns from <see cref="TrainingCorpus"/>, then
/// <c>&lt;unusedN&gt;</c> pieces up to the requested size (Gemma 3 pads to 262,144 the same way).
/// </summary>
public static class GemmaVocabulary
{
    public const int PadId = 0;
    public const int EosId = 1;
    public const int BosId = 2;
    public const int UnkId = 3;
    public const int MaskId = 4;
    public const int StartOfTurnId = 5;
    public const int EndOfTurnId = 6;
    public const int FirstByteId = 7;

    public const string PadToken = "<pad>";
    public const string EosToken = "<eos>";
    public const string BosToken = "<bos>";
    public const string UnkToken = "<unk>";
    public const string MaskToken = "<mask>";
    public const string StartOfTurnToken = "<start_of_turn>";
    public const string EndOfTurnToken = "<end_of_turn>";

    /// <summary>Specials, bytes, alphabet and learned merges: the smallest valid vocabulary size.</summary>
    public const int BaseSize = 768;

    /// <summary>The first id after the byte pieces: where the alphabet starts.</summary>
    internal const int FirstTextId = FirstByteId + 256;

    /// <summary>
    /// Characters every vocabulary holds regardless of the corpus: the word boundary, printable
    /// ASCII, newline and tab, and a few common typographic characters. Everything else
    /// (other accents, CJK, emoji, control characters) falls back to byte pieces.
    /// </summary>
    internal static readonly string Alphabet = BuildAlphabet();

    internal static int NumMerges => BaseSize - FirstTextId - Alphabet.Length;

    /// <summary>
    /// Builds exactly <paramref name="vocabSize"/> pieces; the same inputs always give the same
    /// pieces. With <paramref name="trainingText"/>, merges learned from it fill the ids after the
    /// alphabet (a corpus-specific tokenizer; a short text that runs out of pairs leaves
    /// <c>&lt;unusedN&gt;</c> pieces at the end); without, the built-in
    /// corpus gives <see cref="NumMerges"/> merges and <c>&lt;unusedN&gt;</c> pads the rest.
    /// </summary>
    internal static VocabularyPiece[] Build(int vocabSize, string? trainingText = null)
    {
        if (vocabSize < BaseSize)
        {
            throw new ArgumentException(
                $"vocabSize {vocabSize} is smaller than the base Gemma vocabulary ({BaseSize} pieces).", nameof(vocabSize));
        }

        var pieces = new VocabularyPiece[vocabSize];
        pieces[PadId] = new(PadToken, 0, PieceType.Control);
        pieces[EosId] = new(EosToken, 0, PieceType.Control);
        pieces[BosId] = new(BosToken, 0, PieceType.Control);
        pieces[UnkId] = new(UnkToken, 0, PieceType.Unknown);
        pieces[MaskId] = new(MaskToken, 0, PieceType.UserDefined);
        pieces[StartOfTurnId] = new(StartOfTurnToken, 0, PieceType.UserDefined);
        pieces[EndOfTurnId] = new(EndOfTurnToken, 0, PieceType.UserDefined);
        for (int b = 0; b < 256; b++)
        {
            pieces[FirstByteId + b] = new($"<0x{b:X2}>", 0, PieceType.Byte);
        }

        // SentencePiece BPE scores: merges rank by learning order (-0, -1, ...), single
        // characters score below every merge so they are never preferred as merge results.
        IReadOnlyList<string> merges = trainingText is null
            ? BpeTrainer.Train(TrainingCorpus.Text, NumMerges)
            : BpeTrainer.Train(trainingText, vocabSize - FirstTextId - Alphabet.Length, stopWhenExhausted: true);
        int id = FirstTextId;
        for (int i = 0; i < Alphabet.Length; i++)
        {
            pieces[id++] = new(Alphabet[i].ToString(), -(merges.Count + i), PieceType.Normal);
        }

        for (int i = 0; i < merges.Count; i++)
        {
            pieces[id++] = new(merges[i], -i, PieceType.Normal);
        }

        for (int unused = 0; id < vocabSize; unused++)
        {
            pieces[id++] = new($"<unused{unused}>", 0, PieceType.UserDefined);
        }

        return pieces;
    }

    private static string BuildAlphabet()
    {
        var chars = new List<char> { BpeTrainer.WordBoundary };
        for (char c = '!'; c <= '~'; c++)
        {
            chars.Add(c);
        }

        chars.AddRange("\n\té\u2014\u2019\u201C\u201D");
        return new string(chars.ToArray());
    }
}
