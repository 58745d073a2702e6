using System.Text.Json;
using Serving.Runtime.Text;
using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Tests.Text;

public sealed class GemmaTokenizerWriterTests(TokenizerFolderFixture fixture) : IClassFixture<TokenizerFolderFixture>
{
    private static readonly string[] FileNames =
    [
        GemmaTokenizerWriter.ModelFileName, GemmaTokenizerWriter.TokenizerJsonFileName,
        GemmaTokenizerWriter.ConfigFileName, GemmaTokenizerWriter.SpecialTokensMapFileName,
    ];

    [Fact]
    public void Write_SameInputs_GivesByteIdenticalFiles()
    {
        string other = Path.Combine(Path.GetTempPath(), "serving-text-" + Guid.NewGuid().ToString("N"));
        try
        {
            GemmaTokenizerWriter.Write(other, TokenizerFolderFixture.VocabSize);
            foreach (string name in FileNames)
            {
                Assert.Equal(File.ReadAllBytes(Path.Combine(fixture.Folder, name)), File.ReadAllBytes(Path.Combine(other, name)));
            }
        }
        finally
        {
            Directory.Delete(other, recursive: true);
        }
    }

    [Fact]
    public void Write_VocabSizeBelowBase_Throws()
    {
        var e = Assert.Throws<ArgumentException>(() => GemmaTokenizerWriter.Write(Path.GetTempPath(), GemmaVocabulary.BaseSize - 1));
        Assert.Contains("768", e.Message);
    }

    [Fact]
    public void Model_HasGemmaLayoutAndSettings()
    {
        ModelProto model = ModelProto.Parser.ParseFrom(File.ReadAllBytes(Path.Combine(fixture.Folder, GemmaTokenizerWriter.ModelFileName)));

        Assert.Equal(TokenizerFolderFixture.VocabSize, model.Pieces.Count);
        string[] specials = ["<pad>", "<eos>", "<bos>", "<unk>", "<mask>", "<start_of_turn>", "<end_of_turn>"];
        PieceType[] types = [PieceType.Control, PieceType.Control, PieceType.Control, PieceType.Unknown,
            PieceType.UserDefined, PieceType.UserDefined, PieceType.UserDefined];
        for (int id = 0; id < specials.Length; id++)
        {
            Assert.Equal(specials[id], model.Pieces[id].Piece);
            Assert.Equal(types[id], model.Pieces[id].Type);
        }

        for (int b = 0; b < 256; b++)
        {
            Assert.Equal($"<0x{b:X2}>", model.Pieces[GemmaVocabulary.FirstByteId + b].Piece);
            Assert.Equal(PieceType.Byte, model.Pieces[GemmaVocabulary.FirstByteId + b].Type);
        }

        for (int id = GemmaVocabulary.FirstByteId + 256; id < GemmaVocabulary.BaseSize; id++)
        {
            Assert.Equal(PieceType.Normal, model.Pieces[id].Type);
            Assert.All(model.Pieces[id].Piece, c => Assert.Contains(c, GemmaVocabulary.Alphabet));
        }

        Assert.Contains(model.Pieces, p => p.Piece == "\u2581the");
        Assert.Equal("<unused0>", model.Pieces[GemmaVocabulary.BaseSize].Piece);
        Assert.Equal($"<unused{TokenizerFolderFixture.VocabSize - GemmaVocabulary.BaseSize - 1}>", model.Pieces[^1].Piece);
        Assert.Equal(model.Pieces.Count, model.Pieces.Select(p => p.Piece).Distinct().Count());

        Assert.Equal(TrainerSpec.Types.ModelType.Bpe, model.TrainerSpec.ModelType);
        Assert.True(model.TrainerSpec.ByteFallback);
        Assert.Equal((0, 1, 2, 3), (model.TrainerSpec.PadId, model.TrainerSpec.EosId, model.TrainerSpec.BosId, model.TrainerSpec.UnkId));
        Assert.True(model.NormalizerSpec.HasAddDummyPrefix);
        Assert.False(model.NormalizerSpec.AddDummyPrefix);
        Assert.False(model.NormalizerSpec.RemoveExtraWhitespaces);
        Assert.True(model.NormalizerSpec.EscapeWhitespaces);
    }

    [Fact]
    public void Config_HasGemmaFieldsAndChatTemplate()
    {
        using JsonDocument config = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixture.Folder, GemmaTokenizerWriter.ConfigFileName)));
        JsonElement root = config.RootElement;

        Assert.Equal("GemmaTokenizer", root.GetProperty("tokenizer_class").GetString());
        Assert.True(root.GetProperty("add_bos_token").GetBoolean());
        Assert.False(root.GetProperty("add_eos_token").GetBoolean());
        Assert.Equal(ChatTemplate.Gemma3Jinja, root.GetProperty("chat_template").GetString());
        Assert.StartsWith("{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}", ChatTemplate.Gemma3Jinja);
        JsonElement endOfTurn = root.GetProperty("added_tokens_decoder").GetProperty("6");
        Assert.Equal("<end_of_turn>", endOfTurn.GetProperty("content").GetString());
        Assert.True(endOfTurn.GetProperty("special").GetBoolean());
    }

    [Fact]
    public void Write_Gemma3SizedVocabulary_LoadsWithEveryPiece()
    {
        string folder = Path.Combine(Path.GetTempPath(), "serving-text-" + Guid.NewGuid().ToString("N"));
        try
        {
            // Speed is for benchmarks, not tests: this only checks the full-size vocabulary round-trips.
            GemmaTokenizerWriter.Write(folder, 262_144);

            GemmaTokenizer tokenizer = GemmaTokenizer.Load(folder);
            Assert.Equal(262_144, tokenizer.VocabSize);
            Assert.Equal([GemmaVocabulary.BosId, 262_143], tokenizer.Encode("<unused261375>"));
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }
}
