using Serving.Runtime.Vision;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Tests.ShapesWorld;

public class ShapesWorldTests
{
    [Fact]
    public void TrainingScenesCarryThePlantedCorrelations()
    {
        var random = new Random(1);
        Scene[] scenes = [.. Enumerable.Range(0, 4000).Select(_ => SceneSampler.Training(random))];

        double home = scenes.Count(s => s.Background == SceneSampler.HomeBackground(s.Shape)) / (double)scenes.Length;
        double preferred = scenes.Count(s => s.Size == SceneSampler.PreferredSize(s.Colour)) / (double)scenes.Length;

        Assert.InRange(home, 0.88, 0.92);
        Assert.InRange(preferred, 0.73, 0.77);
        Assert.All(Enum.GetValues<Shape>(), shape => Assert.InRange(scenes.Count(s => s.Shape == shape) / (double)scenes.Length, 0.22, 0.28));
    }

    [Fact]
    public void BalancedSetHoldsEveryCombinationEquallyOften()
    {
        IReadOnlyList<Scene> scenes = SceneSampler.Balanced(repeats: 3, seed: 2);

        Assert.Equal(3 * 4 * 4 * 2 * 2 * 2, scenes.Count);
        Assert.All(scenes.GroupBy(s => (s.Shape, s.Colour, s.Size, s.Texture, s.Background)), group => Assert.Equal(3, group.Count()));
        Assert.All(scenes, s => Assert.True(s.CentreX - s.Radius >= 0 && s.CentreX + s.Radius <= Scene.ImageSize, $"{s} leaves the image"));
    }

    [Fact]
    public void CaptionsAlwaysNameTheShapeAndTheBackgroundOnlySometimes()
    {
        var random = new Random(3);
        var pairs = Enumerable.Range(0, 2000).Select(_ => SceneSampler.Training(random)).Select(s => (Scene: s, Caption: Captions.Training(s, random))).ToArray();

        Assert.All(pairs, p => Assert.Contains(Scene.Word(p.Scene.Shape), p.Caption));
        double mentioned = pairs.Count(p => p.Caption.Contains(Captions.OnBackground(p.Scene.Background))) / (double)pairs.Length;
        Assert.InRange(mentioned, Captions.BackgroundMention - 0.04, Captions.BackgroundMention + 0.04);
        Assert.DoesNotContain(pairs, p => p.Caption.Contains(Captions.OnBackground(p.Scene.Background == Background.Water ? Background.Grass : Background.Water)));
    }

    [Fact]
    public void RendersTheSameImageForTheSameSceneAndShowsTheBackground()
    {
        Scene water = SceneSampler.Balanced(1, seed: 4).First(s => s.Background == Background.Water);
        Scene grass = water with { Background = Background.Grass };

        RgbImage first = SceneRenderer.Render(water), again = SceneRenderer.Render(water), other = SceneRenderer.Render(grass);

        Assert.Equal((Scene.ImageSize, Scene.ImageSize), (first.Width, first.Height));
        Assert.Equal(first.Pixels, again.Pixels);
        Assert.True(MeanChannel(first, 2) > MeanChannel(first, 1), "water is blue");
        Assert.True(MeanChannel(other, 1) > MeanChannel(other, 2), "grass is green");
    }

    [Fact]
    public void PngDecodesToTheRenderedPixels()
    {
        Scene scene = SceneSampler.Balanced(1, seed: 5)[17];
        RgbImage decoded = ImageDecoder.Decode(SceneRenderer.Png(scene), maxPixels: 1 << 20);
        Assert.Equal(SceneRenderer.Render(scene).Pixels, decoded.Pixels);
    }

    private static double MeanChannel(RgbImage image, int channel) =>
        Enumerable.Range(0, image.Width * image.Height).Average(i => image.Pixels[i * 3 + channel]);
}
