using System.Text;
using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

public sealed class IncrementalDetokenizerTests(TokenizerFolderFixture fixture) : IClassFixture<TokenizerFolderFixture>
{
    private GemmaTokenizer Tokenizer => fixture.Tokenizer;

    public static TheoryData<string> Texts() => new([.. TrickyText.Strings, TrickyText.TwoHundredWords]);

    [Theory]
    [MemberData(nameof(Texts))]
    public void Pieces_ConcatenateToFullDecode_WithoutReplacementCharacters(string text)
    {
        int[] ids = Tokenizer.Encode("<start_of_turn>model\n" + text + "<end_of_turn>");

        foreach (bool skipSpecialTokens in (bool[])[true, false])
        {
            List<string> pieces = Stream(ids, skipSpecialTokens);

            Assert.Equal(Tokenizer.Decode(ids, skipSpecialTokens), string.Concat(pieces));
            Assert.All(pieces, piece => Assert.DoesNotContain('\uFFFD', piece));
        }
    }

    [Fact]
    public void MultiByteCharacter_IsHeldUntilComplete()
    {
        int[] euro = Tokenizer.Encode("€", addSpecialTokens: false);
        Assert.Equal(3, euro.Length);
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();

        Assert.Equal("", detokenizer.Add(euro[0]));
        Assert.Equal("", detokenizer.Add(euro[1]));
        Assert.Equal("€", detokenizer.Add(euro[2]));
        Assert.Equal("", detokenizer.Flush());
    }

    [Fact]
    public void LeadingSpaceOfFirstToken_IsKept_AsInFullDecode()
    {
        int[] ids = Tokenizer.Encode(" the end", addSpecialTokens: false);
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();

        Assert.Equal(" the", detokenizer.Add(ids[0]));
        Assert.Equal(" the end", Tokenizer.Decode(ids));
    }

    [Fact]
    public void Flush_ReleasesAnIncompleteCharacter()
    {
        int[] euro = Tokenizer.Encode("a€", addSpecialTokens: false);
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();

        string streamed = detokenizer.Add(euro[0]) + detokenizer.Add(euro[1]) + detokenizer.Flush();

        Assert.Equal(Tokenizer.Decode(euro.AsSpan(0, 2)), streamed);
        Assert.EndsWith("\uFFFD", streamed);
    }

    [Fact]
    public void InvalidBytes_AreEventuallyReleased()
    {
        int continuationByte = GemmaVocabulary.FirstByteId + 0x80;
        int[] ids = [continuationByte, continuationByte, continuationByte, continuationByte, continuationByte, 300];
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer();

        var streamed = new StringBuilder();
        int released = 0;
        foreach (int id in ids)
        {
            string piece = detokenizer.Add(id);
            released += piece.Length > 0 ? 1 : 0;
            streamed.Append(piece);
        }

        streamed.Append(detokenizer.Flush());
        Assert.Equal(Tokenizer.Decode(ids), streamed.ToString());
        Assert.True(released >= 2);
    }

    private List<string> Stream(int[] ids, bool skipSpecialTokens)
    {
        IncrementalDetokenizer detokenizer = Tokenizer.CreateDetokenizer(skipSpecialTokens);
        var pieces = new List<string>(ids.Length + 1);
        foreach (int id in ids)
        {
            pieces.Add(detokenizer.Add(id));
        }

        pieces.Add(detokenizer.Flush());
        return pieces;
    }
}
