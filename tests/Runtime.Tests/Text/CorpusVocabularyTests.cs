using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

/// <summary>A vocabulary whose merges are learned from a caller's text (the trainer's --tokenizer corpus).</summary>
public sealed class CorpusVocabularyTests : IDisposable
{
    private const int VocabSize = 900;
    private readonly TempFolder _folder = new();

    private static string Text => string.Concat(Enumerable.Repeat(
        "And God said, Let there be light: and there was light.\nAnd God saw the light, that it was good.\n" + TrainingCorpus.Text, 3));

    [Fact]
    public void MergesFillTheVocabularyAndEncodingRoundTrips()
    {
        GemmaTokenizerWriter.Write(_folder.Path, VocabSize, Text);
        GemmaTokenizer tokenizer = GemmaTokenizer.Load(_folder.Path);
        VocabularyPiece[] pieces = GemmaVocabulary.Build(VocabSize, Text);

        Assert.DoesNotContain(pieces, piece => piece.Text.StartsWith("<unused", StringComparison.Ordinal));
        const string Verse = "And God said, Let there be light: and there was light.\n";
        int[] ids = tokenizer.Encode(Verse, addSpecialTokens: false);
        Assert.Equal(Verse, tokenizer.Decode(ids));
        // Learned from this very text, the verse costs far fewer tokens than its 56 characters.
        Assert.True(ids.Length < 20, $"{ids.Length} tokens");
    }

    [Fact]
    public void WithoutTextTheBuiltInVocabularyIsUnchanged()
    {
        Assert.Equal(GemmaVocabulary.Build(VocabSize), GemmaVocabulary.Build(VocabSize, trainingText: null));
    }

    public void Dispose() => _folder.Dispose();
}
