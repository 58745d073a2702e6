using System.Reflection;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Tests.Clip;

/// <summary>
/// The trained CLIP committed under models/shapes-clip, through ONNX Runtime: zero-shot shape
/// accuracy on a fixed balanced set of 128 scenes (every attribute combination once) stays
/// near the figure recorded at commit, so a change to its weights, the world's renderer, the
/// tokenizer or the loader that hurts it is caught.
/// </summary>
public sealed class ShapesClipModelTests
{
    private static readonly string Folder = Path.Combine(
        typeof(ShapesClipModelTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "shapes-clip");

    /// <summary>Recorded from the committed weights on <c>SceneSampler.Balanced(1, seed: 3)</c>.</summary>
    private const double RecordedShapeAccuracy = 0.758;

    /// <summary>Five images of 128: room for ONNX Runtime's rounding on another CPU, not for a regression.</summary>
    private const double Margin = 0.04;

    [Fact]
    public void ZeroShotShapeAccuracyHoldsOnTheBalancedSet()
    {
        using ClipModel model = ClipModel.Load(Folder);
        IReadOnlyList<Scene> scenes = SceneSampler.Balanced(repeats: 1, seed: 3);
        float[][] images = model.EmbedImages([.. scenes.Select(SceneRenderer.Render)]);

        double accuracy = ZeroShot.Accuracy(images, ZeroShot.ShapeClasses(model.EmbedTexts), [.. scenes.Select(s => (int)s.Shape)]);

        Assert.True(accuracy >= RecordedShapeAccuracy - Margin, $"zero-shot shape accuracy {accuracy:P1}, recorded {RecordedShapeAccuracy:P1}");
    }

    [Fact]
    public void LoadsAsTheSmallSplitLayoutClip()
    {
        using ClipModel model = ClipModel.Load(Folder);
        Assert.Equal("split", model.Layout);
        Assert.Equal(Scene.ImageSize, model.Config.ImageSize);
        long bytes = new DirectoryInfo(Folder).EnumerateFiles("*", SearchOption.AllDirectories).Sum(f => f.Length);
        Assert.True(bytes < 20_000_000, $"models/shapes-clip holds {bytes:N0} bytes");
    }
}
