using System.Text.Json;
using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

public sealed class TokenizerJsonEquivalenceTests(TokenizerFolderFixture fixture) : IClassFixture<TokenizerFolderFixture>
{
    private readonly HuggingFaceBpeReference _reference =
        new(Path.Combine(fixture.Folder, GemmaTokenizerWriter.TokenizerJsonFileName));

    public static TheoryData<string> Tricky() => new(TrickyText.Strings);

    [Theory]
    [MemberData(nameof(Tricky))]
    public void TokenizerJson_EncodesLikeTokenizerModel(string text)
    {
        Assert.Equal(_reference.Encode(text), fixture.Tokenizer.Encode(text, addSpecialTokens: false));
    }

    [Fact]
    public void TokenizerJson_EncodesProseLikeTokenizerModel()
    {
        Assert.Equal(_reference.Encode(TrickyText.TwoHundredWords), fixture.Tokenizer.Encode(TrickyText.TwoHundredWords, addSpecialTokens: false));
        string corpus = ChatTemplate.Gemma3Jinja + TrickyText.TwoHundredWords.ToUpperInvariant();
        Assert.Equal(_reference.Encode(corpus), fixture.Tokenizer.Encode(corpus, addSpecialTokens: false));
    }

    [Fact]
    public void TokenizerJson_HasGemmaPipeline()
    {
        using JsonDocument document = JsonDocument.Parse(File.ReadAllBytes(Path.Combine(fixture.Folder, GemmaTokenizerWriter.TokenizerJsonFileName)));
        JsonElement root = document.RootElement;
        JsonElement model = root.GetProperty("model");

        Assert.True(model.GetProperty("fuse_unk").GetBoolean());
        Assert.Equal("<unk>", model.GetProperty("unk_token").GetString());
        Assert.Equal(TokenizerFolderFixture.VocabSize, model.GetProperty("vocab").EnumerateObject().Count());
        Assert.True(_reference.MergeCount >= GemmaVocabulary.BaseSize - GemmaVocabulary.FirstByteId - 256 - 102);
        string[] decoders = [.. root.GetProperty("decoder").GetProperty("decoders").EnumerateArray().Select(d => d.GetProperty("type").GetString()!)];
        Assert.Equal(["Replace", "ByteFallback", "Fuse"], decoders);
        Assert.Equal(GemmaVocabulary.BosId, root.GetProperty("post_processor").GetProperty("special_tokens").GetProperty("<bos>").GetProperty("ids")[0].GetInt32());
        Assert.Equal(TokenizerFolderFixture.VocabSize - GemmaVocabulary.BaseSize + 7, root.GetProperty("added_tokens").GetArrayLength());
    }
}
