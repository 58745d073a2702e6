namespace Serving.Trainer.ShapesWorld;

/// <summary>
/// Draws scenes. The training distribution plants two correlations, as Waterbirds does:
/// each shape sits on "its" background (<see cref="HomeBackground"/>) with probability
/// <see cref="BackgroundCorrelation"/>, and colour predicts size with probability
/// <see cref="SizeCorrelation"/> (red and yellow shapes mostly large, purple and white mostly
/// small): the unconsidered concept for measuring amplification. The balanced distribution
/// draws every attribute independently and uniformly.
/// </summary>
public static class SceneSampler
{
    public const double BackgroundCorrelation = 0.9;
    public const double SizeCorrelation = 0.75;

    /// <summary>Circles and triangles live on water, squares and stars on grass.</summary>
    public static Background HomeBackground(Shape shape) => shape is Shape.Circle or Shape.Triangle ? Background.Water : Background.Grass;

    /// <summary>The size colour prefers in training.</summary>
    public static Size PreferredSize(Colour colour) => colour is Colour.Red or Colour.Yellow ? Size.Large : Size.Small;

    public static Scene Training(Random random)
    {
        Shape shape = Pick<Shape>(random);
        Colour colour = Pick<Colour>(random);
        Background home = HomeBackground(shape);
        Background background = random.NextDouble() < BackgroundCorrelation ? home : Other(home);
        Size preferred = PreferredSize(colour);
        Size size = random.NextDouble() < SizeCorrelation ? preferred : Other(preferred);
        return Place(random, shape, colour, size, Pick<Texture>(random), background);
    }

    /// <summary>Every combination of the five attributes, <paramref name="repeats"/> times each, at random places: a balanced set.</summary>
    public static IReadOnlyList<Scene> Balanced(int repeats, int seed)
    {
        var random = new Random(seed);
        var scenes = new List<Scene>();
        for (int r = 0; r < repeats; r++)
        {
            foreach (Shape shape in Enum.GetValues<Shape>())
            {
                foreach (Colour colour in Enum.GetValues<Colour>())
                {
                    foreach (Size size in Enum.GetValues<Size>())
                    {
                        foreach (Texture texture in Enum.GetValues<Texture>())
                        {
                            foreach (Background background in Enum.GetValues<Background>())
                            {
                                scenes.Add(Place(random, shape, colour, size, texture, background));
                            }
                        }
                    }
                }
            }
        }

        return scenes;
    }

    /// <summary>A random centre that keeps the whole shape inside the image, a random turn and background detail.</summary>
    private static Scene Place(Random random, Shape shape, Colour colour, Size size, Texture texture, Background background)
    {
        float radius = size == Size.Small ? 8f : 16f, margin = radius + 2, span = Scene.ImageSize - 2 * margin;
        return new Scene(shape, colour, size, texture, background,
            margin + (float)random.NextDouble() * span, margin + (float)random.NextDouble() * span,
            (float)(random.NextDouble() * 360), random.Next());
    }

    private static T Pick<T>(Random random)
        where T : struct, Enum
    {
        T[] values = Enum.GetValues<T>();
        return values[random.Next(values.Length)];
    }

    private static Background Other(Background background) => background == Background.Water ? Background.Grass : Background.Water;

    private static Size Other(Size size) => size == Size.Small ? Size.Large : Size.Small;
}
