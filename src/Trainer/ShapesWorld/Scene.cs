namespace Serving.Trainer.ShapesWorld;

public enum Shape { Circle, Square, Triangle, Star }

public enum Colour { Red, Yellow, Purple, White }

public enum Size { Small, Large }

public enum Texture { Plain, Striped }

/// <summary>The two backgrounds: blue water with waves, green grass with blades.</summary>
public enum Background { Water, Grass }

/// <summary>
/// One picture of the world: its attributes, where the shape sits (centre, in pixels of a
/// 64² image), its turn, and the seed of the background's waves or blades.
/// </summary>
public sealed record Scene(Shape Shape, Colour Colour, Size Size, Texture Texture, Background Background,
    float CentreX, float CentreY, float Angle, int DetailSeed)
{
    public const int ImageSize = 64;

    /// <summary>Radius of the shape's enclosing circle: about 1/8 of the image small, 1/4 large.</summary>
    public float Radius => Size == Size.Small ? 8f : 16f;

    public static IReadOnlyList<string> Words<T>()
        where T : struct, Enum => [.. Enum.GetNames<T>().Select(name => name.ToLowerInvariant())];

    public static string Word<T>(T value)
        where T : struct, Enum => value.ToString().ToLowerInvariant();
}
