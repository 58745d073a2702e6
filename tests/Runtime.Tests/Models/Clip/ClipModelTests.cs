using Serving.Runtime.Models;
using Serving.Runtime.Models.Clip;

namespace Serving.Runtime.Tests.Models.Clip;

/// <summary>One clip-tiny folder (seed 3) for the class: ONNX Runtime against the C# reference.</summary>
public sealed class ClipModelFixture : IDisposable
{
    private readonly TempFolder _folder = new();

    public ClipModelFixture()
    {
        ClipModelWriter.WriteRandom(_folder.Path, ClipPresets.Tiny, Seed);
        Model = ClipModel.Load(_folder.Path);
        Reference = new ClipReference(ClipPresets.Tiny, spec => ClipWeights.Random(spec, Seed));
    }

    public const ulong Seed = 3;

    public string Folder => _folder.Path;

    public ClipModel Model { get; }

    public ClipReference Reference { get; }

    public void Dispose()
    {
        Model.Dispose();
        _folder.Dispose();
    }
}

public sealed class ClipModelTests(ClipModelFixture fixture) : IClassFixture<ClipModelFixture>
{
    [Fact]
    public void TextTowerMatchesTheReference()
    {
        string[] texts = ["a photo of a cat", "it was the best of times, it was the worst of times", "x"];
        float[][] embeddings = fixture.Model.EmbedTexts(texts);
        for (int i = 0; i < texts.Length; i++)
        {
            double[] expected = fixture.Reference.Text(fixture.Model.Tokenizer.Encode(texts[i]));
            AssertClose(expected, embeddings[i]);
        }
    }

    [Fact]
    public void VisionTowerMatchesTheReference()
    {
        var random = new Random(11);
        int size = fixture.Model.Processor.ValuesPerImage;
        float[] pixels = [.. Enumerable.Range(0, 2 * size).Select(_ => (float)(random.NextDouble() * 4 - 2))];
        float[][] embeddings = fixture.Model.EmbedPixels(pixels, 2);
        for (int i = 0; i < 2; i++)
        {
            AssertClose(fixture.Reference.Vision(pixels[(i * size)..((i + 1) * size)]), embeddings[i]);
        }
    }

    [Fact]
    public void PaddingInABatchDoesNotChangeAText()
    {
        float[] alone = fixture.Model.EmbedTexts(["short"])[0];
        float[] batched = fixture.Model.EmbedTexts(["short", "a much longer text that pads the short one with end tokens"])[0];
        Assert.Equal(alone, batched, (a, b) => Math.Abs(a - b) < 1e-5f);
    }

    [Fact]
    public void LongTextsAreCutTo77TokensKeepingTheEndToken()
    {
        string text = string.Join(' ', Enumerable.Repeat("the quick brown fox", 60));
        int[] ids = fixture.Model.Tokenizer.Encode(text);
        Assert.Equal(77, ids.Length);
        Assert.Equal(fixture.Model.Tokenizer.StartOfTextId, ids[0]);
        Assert.Equal(fixture.Model.Tokenizer.EndOfTextId, ids[^1]);
        Assert.DoesNotContain(fixture.Model.Tokenizer.EndOfTextId, ids[..^1]);
    }

    [Fact]
    public void TokenizerNormalisesCaseAccentsAndWhitespace()
    {
        var tokenizer = fixture.Model.Tokenizer;
        Assert.Equal(tokenizer.Encode("the  Best\tof TIMES"), tokenizer.Encode("the best of times"));
        Assert.Equal(tokenizer.Encode("cafe\u0301"), tokenizer.Encode("caf\u00e9"));
        Assert.Equal(2, tokenizer.Encode("").Length);
    }

    [Fact]
    public void WritingTwiceGivesTheSameBytes()
    {
        using var other = new TempFolder();
        ClipModelWriter.WriteRandom(other.Path, ClipPresets.Tiny, ClipModelFixture.Seed);
        foreach (string file in (string[])["onnx/text_model.onnx_data", "onnx/vision_model.onnx", "vocab.json", "merges.txt", "tokenizer.json"])
        {
            Assert.Equal(File.ReadAllBytes(Path.Combine(fixture.Folder, file)), File.ReadAllBytes(Path.Combine(other.Path, file)));
        }
    }

    [Fact]
    public void LoadingAFolderWithoutGraphsNamesWhatIsMissing()
    {
        using var folder = new TempFolder();
        ClipModelWriter.WriteRandom(folder.Path, ClipPresets.Tiny, 1);
        File.Delete(Path.Combine(folder.Path, ClipModelWriter.VisionFile));
        var error = Assert.Throws<ModelLoadException>(() => ClipModel.Load(folder.Path));
        Assert.Contains("vision_model.onnx", error.Message);
    }

    [Fact]
    public void LoadingAnotherModelTypeFails()
    {
        using var folder = new TempFolder();
        File.WriteAllText(folder.File("config.json"), """{"model_type":"gemma3_text"}""");
        var error = Assert.Throws<ModelLoadException>(() => ClipModel.Load(folder.Path));
        Assert.Contains("model_type", error.Message);
    }

    /// <summary>Both sides normalised: ‖a − b‖ / ‖b‖ below 1e-4.</summary>
    private static void AssertClose(double[] reference, float[] actual)
    {
        double norm = Math.Sqrt(reference.Sum(v => v * v));
        double error = Math.Sqrt(reference.Select((v, i) => (v / norm - actual[i]) * (v / norm - actual[i])).Sum());
        Assert.True(error < 1e-4, $"relative error {error:E2}");
    }
}
