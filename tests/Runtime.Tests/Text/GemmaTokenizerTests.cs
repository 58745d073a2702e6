using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

public sealed class GemmaTokenizerTests(TokenizerFolderFixture fixture) : IClassFixture<TokenizerFolderFixture>
{
    private GemmaTokenizer Tokenizer => fixture.Tokenizer;

    public static TheoryData<string> Tricky() => new(TrickyText.Strings);

    [Fact]
    public void Load_ReadsSpecialIdsAndTemplate()
    {
        Assert.Equal(TokenizerFolderFixture.VocabSize, Tokenizer.VocabSize);
        Assert.Equal((GemmaVocabulary.BosId, GemmaVocabulary.EosId, GemmaVocabulary.PadId, GemmaVocabulary.UnkId),
            (Tokenizer.BosId, Tokenizer.EosId, Tokenizer.PadId, Tokenizer.UnkId));
        Assert.Equal((2, 1, 0, 3), (Tokenizer.BosId, Tokenizer.EosId, Tokenizer.PadId, Tokenizer.UnkId));
        Assert.Equal(GemmaVocabulary.StartOfTurnId, Tokenizer.StartOfTurnId);
        Assert.Equal(GemmaVocabulary.EndOfTurnId, Tokenizer.EndOfTurnId);
        Assert.True(Tokenizer.AddBosToken);
        Assert.False(Tokenizer.AddEosToken);
        Assert.Equal(ChatTemplate.Gemma3Jinja, Tokenizer.ChatTemplateJinja);
    }

    [Theory]
    [MemberData(nameof(Tricky))]
    public void Encode_ThenDecode_RoundTrips(string text)
    {
        int[] ids = Tokenizer.Encode(text, addSpecialTokens: false);

        Assert.Equal(text, Tokenizer.Decode(ids));
        Assert.DoesNotContain(GemmaVocabulary.UnkId, ids);
    }

    [Theory]
    [MemberData(nameof(Tricky))]
    public void MaxBytesPerToken_BoundsEveryEncoding(string text)
    {
        int bound = Tokenizer.MaxBytesPerToken!.Value;
        int[] ids = Tokenizer.Encode(text, addSpecialTokens: false);

        long bytes = System.Text.Encoding.UTF8.GetByteCount(text);
        Assert.True(bytes <= (long)ids.Length * bound, $"{bytes} bytes in {ids.Length} tokens of at most {bound} bytes");
        Assert.False(Tokenizer.IsSurelyLongerThan(bytes, ids.Length));
        Assert.True(Tokenizer.IsSurelyLongerThan((long)ids.Length * bound + 1, ids.Length));
    }

    [Fact]
    public void Encode_AddsBosOnlyWithSpecialTokens()
    {
        int[] plain = Tokenizer.Encode("Hello world", addSpecialTokens: false);
        int[] withBos = Tokenizer.Encode("Hello world");

        Assert.Equal([GemmaVocabulary.BosId, .. plain], withBos);
        Assert.Empty(Tokenizer.Encode("", addSpecialTokens: false));
        Assert.Equal([GemmaVocabulary.BosId], Tokenizer.Encode(""));
    }

    [Fact]
    public void Encode_UsesLearnedPiecesAndWordBoundaries()
    {
        int[] ids = Tokenizer.Encode(" the", addSpecialTokens: false);

        Assert.Single(ids);
        Assert.Equal(" the", Tokenizer.Decode(ids));
        int[] sentence = Tokenizer.Encode(" It was the best of times", addSpecialTokens: false);
        Assert.True(sentence.Length <= 8, string.Join("|", sentence.Select(id => Tokenizer.Decode([id]))));
    }

    [Fact]
    public void Encode_RecognisesTurnMarkersAsSingleIds()
    {
        int[] ids = Tokenizer.Encode("<start_of_turn>user\nHi<end_of_turn>", addSpecialTokens: false);

        Assert.Equal(GemmaVocabulary.StartOfTurnId, ids[0]);
        Assert.Equal(GemmaVocabulary.EndOfTurnId, ids[^1]);
        Assert.Equal(1, ids.Count(id => id == GemmaVocabulary.StartOfTurnId));
    }

    [Fact]
    public void Encode_FallsBackToUtf8BytesForUnknownCharacters()
    {
        int[] ids = Tokenizer.Encode("€", addSpecialTokens: false);

        Assert.Equal([GemmaVocabulary.FirstByteId + 0xE2, GemmaVocabulary.FirstByteId + 0x82, GemmaVocabulary.FirstByteId + 0xAC], ids);
    }

    [Fact]
    public void Decode_SkipSpecialTokens_DropsControlAndTurnMarkers()
    {
        int[] ids = Tokenizer.Encode("<start_of_turn>model\nHi there<end_of_turn>");

        Assert.Equal("<bos><start_of_turn>model\nHi there<end_of_turn>", Tokenizer.Decode(ids));
        Assert.Equal("model\nHi there", Tokenizer.Decode(ids, skipSpecialTokens: true));
        Assert.True(Tokenizer.IsSpecial(GemmaVocabulary.EosId));
        Assert.False(Tokenizer.IsSpecial(GemmaVocabulary.MaskId));
    }

    [Fact]
    public void Decode_IdOutsideVocabulary_Throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => Tokenizer.Decode([5000]));
    }
}
