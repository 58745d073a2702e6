using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

public sealed class GemmaTokenizerLoadErrorTests : IDisposable
{
    private readonly string _folder = Path.Combine(Path.GetTempPath(), "serving-text-" + Guid.NewGuid().ToString("N"));

    public GemmaTokenizerLoadErrorTests() => GemmaTokenizerWriter.Write(_folder, GemmaVocabulary.BaseSize);

    public void Dispose() => Directory.Delete(_folder, recursive: true);

    private string ModelPath => Path.Combine(_folder, GemmaTokenizerWriter.ModelFileName);
    private string ConfigPath => Path.Combine(_folder, GemmaTokenizerWriter.ConfigFileName);

    [Fact]
    public void Load_BaseSizedVocabulary_Works()
    {
        Assert.Equal(GemmaVocabulary.BaseSize, GemmaTokenizer.Load(_folder).VocabSize);
    }

    [Fact]
    public void Load_MissingModel_ThrowsFileNotFoundNamingIt()
    {
        File.Delete(ModelPath);

        var e = Assert.Throws<FileNotFoundException>(() => GemmaTokenizer.Load(_folder));
        Assert.Equal(ModelPath, e.FileName);
        Assert.Contains(ModelPath, e.Message);
    }

    [Fact]
    public void Load_MissingConfig_ThrowsFileNotFoundNamingIt()
    {
        File.Delete(ConfigPath);

        var e = Assert.Throws<FileNotFoundException>(() => GemmaTokenizer.Load(_folder));
        Assert.Equal(ConfigPath, e.FileName);
    }

    [Theory]
    [InlineData(new byte[] { 0xFF, 0xFF, 0xFF, 0xFF, 0x0F })]
    [InlineData(new byte[] { })]
    [InlineData(new byte[] { (byte)'{', (byte)'}', 0x0A })]
    public void Load_CorruptModel_ThrowsInvalidDataNamingIt(byte[] content)
    {
        File.WriteAllBytes(ModelPath, content);

        var e = Assert.Throws<InvalidDataException>(() => GemmaTokenizer.Load(_folder));
        Assert.Contains(ModelPath, e.Message);
    }

    [Theory]
    [InlineData("{ not json")]
    [InlineData("[1, 2]")]
    [InlineData("{\"add_bos_token\": \"yes\"}")]
    [InlineData("{\"added_tokens_decoder\": {\"x\": {\"content\": \"<bos>\"}}}")]
    public void Load_CorruptConfig_ThrowsInvalidDataNamingIt(string content)
    {
        File.WriteAllText(ConfigPath, content);

        var e = Assert.Throws<InvalidDataException>(() => GemmaTokenizer.Load(_folder));
        Assert.Contains(ConfigPath, e.Message);
    }
}
