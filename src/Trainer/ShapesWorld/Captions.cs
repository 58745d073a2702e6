namespace Serving.Trainer.ShapesWorld;

/// <summary>
/// Training captions from templates. The shape is always named; colour, size and stripes
/// often; the background only in <see cref="BackgroundMention"/> of captions, so most of
/// what the model learns about backgrounds rides on the shape words (the confounder).
/// </summary>
public static class Captions
{
    public const double BackgroundMention = 0.3;
    private const double ColourMention = 0.8, SizeMention = 0.6, StripesMention = 0.6;
    private static readonly string[] Openings = ["a photo of a", "a picture of a", "a"];

    public static string Training(Scene scene, Random random)
    {
        var words = new List<string> { Openings[random.Next(Openings.Length)] };
        if (random.NextDouble() < SizeMention)
        {
            words.Add(Scene.Word(scene.Size));
        }

        if (random.NextDouble() < ColourMention)
        {
            words.Add(Scene.Word(scene.Colour));
        }

        if (scene.Texture == Texture.Striped && random.NextDouble() < StripesMention)
        {
            words.Add("striped");
        }

        words.Add(Scene.Word(scene.Shape));
        if (random.NextDouble() < BackgroundMention)
        {
            words.Add(OnBackground(scene.Background));
        }

        return string.Join(' ', words);
    }

    /// <summary>"on the water" / "on the grass".</summary>
    public static string OnBackground(Background background) => background == Background.Water ? "on the water" : "on the grass";
}
