using System.Numerics.Tensors;

namespace Serving.Trainer.ShapesWorld;

/// <summary>Zero-shot accuracy of each attribute on a set of scenes, as fractions.</summary>
public sealed record ZeroShotAccuracy(double Shape, double Colour, double Size, double Background);

/// <summary>
/// Zero-shot classification of the shapes world with prompts, for any embedder (the trainer's
/// model or an exported ONNX folder). Shape classes are single prompts ("a photo of a
/// circle"); colour, size and background prompts are averaged over the four shapes ("a photo
/// of a red circle", …), prompt ensembling as in Radford et al. 2021, since every training
/// caption names a shape.
/// </summary>
public static class ZeroShot
{
    public static string ShapePrompt(Shape shape) => $"a photo of a {Scene.Word(shape)}";

    public static IReadOnlyList<string> ColourPrompts(Colour colour) => [.. Enum.GetValues<Shape>().Select(s => $"a photo of a {Scene.Word(colour)} {Scene.Word(s)}")];

    public static IReadOnlyList<string> SizePrompts(Size size) => [.. Enum.GetValues<Shape>().Select(s => $"a photo of a {Scene.Word(size)} {Scene.Word(s)}")];

    public static IReadOnlyList<string> BackgroundPrompts(Background background) =>
        [.. Enum.GetValues<Shape>().Select(s => $"a photo of a {Scene.Word(s)} {Captions.OnBackground(background)}")];

    /// <summary>One unit vector per class: the normalised mean of its prompts' normalised embeddings.</summary>
    public static float[][] ClassEmbeddings(Func<IReadOnlyList<string>, float[][]> embedTexts, IEnumerable<IReadOnlyList<string>> promptsPerClass) =>
        [.. promptsPerClass.Select(prompts => Normalised(Mean(embedTexts(prompts).Select(Normalised).ToArray())))];

    public static float[][] ShapeClasses(Func<IReadOnlyList<string>, float[][]> embedTexts) =>
        ClassEmbeddings(embedTexts, Enum.GetValues<Shape>().Select(s => (IReadOnlyList<string>)[ShapePrompt(s)]));

    public static float[][] ColourClasses(Func<IReadOnlyList<string>, float[][]> embedTexts) =>
        ClassEmbeddings(embedTexts, Enum.GetValues<Colour>().Select(ColourPrompts));

    public static float[][] SizeClasses(Func<IReadOnlyList<string>, float[][]> embedTexts) =>
        ClassEmbeddings(embedTexts, Enum.GetValues<Size>().Select(SizePrompts));

    public static float[][] BackgroundClasses(Func<IReadOnlyList<string>, float[][]> embedTexts) =>
        ClassEmbeddings(embedTexts, Enum.GetValues<Background>().Select(BackgroundPrompts));

    /// <summary>The class of highest cosine for each image.</summary>
    public static int[] Classify(IReadOnlyList<float[]> images, IReadOnlyList<float[]> classes) =>
        [.. images.Select(image => Enumerable.Range(0, classes.Count).MaxBy(c => TensorPrimitives.CosineSimilarity(image, classes[c])))];

    public static double Accuracy(IReadOnlyList<float[]> images, IReadOnlyList<float[]> classes, IReadOnlyList<int> labels)
    {
        int[] predicted = Classify(images, classes);
        return predicted.Where((p, i) => p == labels[i]).Count() / (double)labels.Count;
    }

    public static ZeroShotAccuracy Evaluate(IReadOnlyList<Scene> scenes, IReadOnlyList<float[]> images, Func<IReadOnlyList<string>, float[][]> embedTexts) => new(
        Accuracy(images, ShapeClasses(embedTexts), [.. scenes.Select(s => (int)s.Shape)]),
        Accuracy(images, ColourClasses(embedTexts), [.. scenes.Select(s => (int)s.Colour)]),
        Accuracy(images, SizeClasses(embedTexts), [.. scenes.Select(s => (int)s.Size)]),
        Accuracy(images, BackgroundClasses(embedTexts), [.. scenes.Select(s => (int)s.Background)]));

    public static float[] Normalised(float[] v)
    {
        float norm = TensorPrimitives.Norm(v);
        return norm > 0 ? [.. v.Select(x => x / norm)] : v;
    }

    private static float[] Mean(float[][] rows)
    {
        var mean = new float[rows[0].Length];
        foreach (float[] row in rows)
        {
            TensorPrimitives.Add(mean, row, mean);
        }

        return mean;
    }
}
