using Google.Protobuf;
using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>
/// Writes the tokenizer files of a Gemma 3 Hugging Face / transformers.js export for the
/// synthetic <see cref="GemmaVocabulary"/>: <c>tokenizer.model</c> (SentencePiece BPE),
/// <c>tokenizer.json</c> (Hugging Face tokenizers, equivalent merges),
/// <c>tokenizer_config.json</c> (with Gemma 3's chat template) and
/// <c>special_tokens_map.json</c>. The same inputs always give byte-identical files.
/// </summary>
public static class GemmaTokenizerWriter
{
    public const string ModelFileName = "tokenizer.model";
    public const string TokenizerJsonFileName = "tokenizer.json";
    public const string ConfigFileName = "tokenizer_config.json";
    public const string SpecialTokensMapFileName = "special_tokens_map.json";

    /// <summary>
    /// Writes the four files into <paramref name="folder"/>, creating it if needed; with
    /// <paramref name="trainingText"/>, the BPE merges are learned from that text (see
    /// <see cref="GemmaVocabulary.Build"/>).
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="vocabSize"/> is below <see cref="GemmaVocabulary.BaseSize"/>.</exception>
    public static void Write(string folder, int vocabSize, string? trainingText = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(folder);
        VocabularyPiece[] pieces = GemmaVocabulary.Build(vocabSize, trainingText);
        Directory.CreateDirectory(folder);
        File.WriteAllBytes(Path.Combine(folder, ModelFileName), BuildModel(pieces).ToByteArray());
        HuggingFaceTokenizerFiles.WriteTokenizerJson(Path.Combine(folder, TokenizerJsonFileName), pieces);
        HuggingFaceTokenizerFiles.WriteTokenizerConfig(Path.Combine(folder, ConfigFileName), pieces);
        HuggingFaceTokenizerFiles.WriteSpecialTokensMap(Path.Combine(folder, SpecialTokensMapFileName));
    }

    /// <summary>Gemma's SentencePiece settings: BPE with byte fallback, identity normalization, "▁" for spaces, no dummy prefix.</summary>
    internal static ModelProto BuildModel(VocabularyPiece[] pieces)
    {
        var model = new ModelProto
        {
            TrainerSpec = new TrainerSpec
            {
                ModelType = TrainerSpec.Types.ModelType.Bpe,
                VocabSize = pieces.Length,
                SplitDigits = true,
                ByteFallback = true,
                UnkId = GemmaVocabulary.UnkId,
                BosId = GemmaVocabulary.BosId,
                EosId = GemmaVocabulary.EosId,
                PadId = GemmaVocabulary.PadId,
                UnkPiece = GemmaVocabulary.UnkToken,
                BosPiece = GemmaVocabulary.BosToken,
                EosPiece = GemmaVocabulary.EosToken,
                PadPiece = GemmaVocabulary.PadToken,
            },
            NormalizerSpec = new NormalizerSpec
            {
                Name = "identity",
                PrecompiledCharsmap = ByteString.Empty,
                AddDummyPrefix = false,
                RemoveExtraWhitespaces = false,
                EscapeWhitespaces = true,
            },
        };

        foreach (VocabularyPiece piece in pieces)
        {
            var entry = new ModelProto.Types.SentencePiece { Piece = piece.Text, Score = piece.Score };
            if (piece.Type != PieceType.Normal)
            {
                entry.Type = piece.Type;
            }

            model.Pieces.Add(entry);
        }

        return model;
    }
}
