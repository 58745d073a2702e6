using System.Reflection;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;

namespace Serving.Runtime.Tests.Models;

/// <summary>
/// The trained model committed under models/kjv-gemma3: a fixed greedy continuation, so an
/// accidental change to its weights, its tokenizer or the loader is caught.
/// </summary>
public sealed class KjvGemma3ModelTests
{
    private static readonly string Folder = Path.Combine(
        typeof(KjvGemma3ModelTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "kjv-gemma3");

    [Fact]
    public void GreedyContinuationIsTheRecordedOne()
    {
        using DecoderModel model = DecoderModel.Load(Folder);
        int[] prompt = model.Tokenizer.Encode("In the beginning God created");
        GenerationResult result = new Generator(model).Generate(prompt, new GenerateOptions(24, StopAtEos: false));
        Assert.Equal(ExpectedText, model.Tokenizer.Decode([.. result.TokenIds]));
    }

    /// <summary>Recorded from the committed weights (greedy, 24 tokens; the same text `serving generate` prints).</summary>
    private const string ExpectedText = " in the earth.\nThen the people answered and said, I am the LORD, and the earth is come";
}
