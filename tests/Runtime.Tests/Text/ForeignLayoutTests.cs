using Google.Protobuf;
using Microsoft.ML.Tokenizers;
using Serving.Runtime.Text;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Tests.Text;

/// <summary>
/// A folder laid out like a real Gemma 3 export (turn markers at 105/106 after 99 unused
/// pieces, byte pieces from 107): everything must come from the files, not our constants.
/// </summary>
public sealed class ForeignLayoutTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "serving-text-" + Guid.NewGuid().ToString("N"));
    private readonly GemmaTokenizer _tokenizer;

    public ForeignLayoutTests()
    {
        VocabularyPiece[] ours = GemmaVocabulary.Build(1024);
        var pieces = new List<VocabularyPiece>(ours[..5]) { new("[multimodal]", 0, PieceType.UserDefined) };
        for (int i = 0; i < 99; i++)
        {
            pieces.Add(new($"<unused{i}>", 0, PieceType.UserDefined));
        }

        pieces.Add(ours[GemmaVocabulary.StartOfTurnId]);
        pieces.Add(ours[GemmaVocabulary.EndOfTurnId]);
        pieces.AddRange(ours[GemmaVocabulary.FirstByteId..GemmaVocabulary.BaseSize]);
        VocabularyPiece[] layout = [.. pieces];

        Directory.CreateDirectory(_folder);
        File.WriteAllBytes(Path.Combine(_folder, GemmaTokenizerWriter.ModelFileName), GemmaTokenizerWriter.BuildModel(layout).ToByteArray());
        HuggingFaceTokenizerFiles.WriteTokenizerJson(Path.Combine(_folder, GemmaTokenizerWriter.TokenizerJsonFileName), layout);
        HuggingFaceTokenizerFiles.WriteTokenizerConfig(Path.Combine(_folder, GemmaTokenizerWriter.ConfigFileName), layout);
        _tokenizer = GemmaTokenizer.Load(_folder);
    }

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    public static TheoryData<string> Tricky() => new(TrickyText.Strings);

    [Fact]
    public void Load_TakesIdsFromTheFiles()
    {
        Assert.Equal((105, 106), (_tokenizer.StartOfTurnId, _tokenizer.EndOfTurnId));
        Assert.Equal((2, 1, 0, 3), (_tokenizer.BosId, _tokenizer.EosId, _tokenizer.PadId, _tokenizer.UnkId));
        Assert.Equal([107 + 0xE2, 107 + 0x82, 107 + 0xAC], _tokenizer.Encode("€", addSpecialTokens: false));
    }

    [Theory]
    [MemberData(nameof(Tricky))]
    public void Encode_RoundTripsAndMatchesTokenizerJson(string text)
    {
        int[] ids = _tokenizer.Encode(text, addSpecialTokens: false);
        var reference = new HuggingFaceBpeReference(Path.Combine(_folder, GemmaTokenizerWriter.TokenizerJsonFileName));

        Assert.Equal(text, _tokenizer.Decode(ids));
        Assert.Equal(reference.Encode(text), ids);
    }

    [Fact]
    public void Decode_AgreesWithMicrosoftMLTokenizers()
    {
        using FileStream model = File.OpenRead(Path.Combine(_folder, GemmaTokenizerWriter.ModelFileName));
        SentencePieceTokenizer sentencePiece = SentencePieceTokenizer.Create(model, false, false);
        foreach (string text in TrickyText.Strings.Append(TrickyText.TwoHundredWords).Where(t => !t.Contains('<')))
        {
            int[] ids = _tokenizer.Encode(text);

            Assert.Equal(sentencePiece.Decode(ids, considerSpecialTokens: true), _tokenizer.Decode(ids));
            Assert.Equal(sentencePiece.Decode(ids, considerSpecialTokens: false), _tokenizer.Decode(ids, skipSpecialTokens: true));
        }
    }
}
