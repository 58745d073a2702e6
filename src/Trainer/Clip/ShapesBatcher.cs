using Serving.Runtime.Models.Clip;
using Serving.Runtime.Text;
using Serving.Runtime.Vision;
using Serving.Trainer.ShapesWorld;

namespace Serving.Trainer.Clip;

/// <summary>One batch of image–caption pairs: preprocessed pixels <c>[B, 3, S, S]</c> and end-padded ids <c>[B, length]</c>.</summary>
public sealed record PairBatch(float[] Pixels, int[] Ids, int Batch, int Length, IReadOnlyList<Scene> Scenes, IReadOnlyList<string> Captions);

/// <summary>
/// Training pairs from the shapes world, generated on the fly: pair i of step s comes from its
/// own generator seeded by (seed, s, i), so a batch is the same on every run, whichever
/// thread renders it, and a resumed run sees the batches it would have seen.
/// </summary>
public sealed class ShapesBatcher(ClipTokenizer tokenizer, ClipImageProcessor processor, ulong seed)
{
    public ClipTokenizer Tokenizer { get; } = tokenizer;
    public ClipImageProcessor Processor { get; } = processor;

    /// <summary>The tokenizer and processor an exported folder of <paramref name="config"/> will have.</summary>
    public static ShapesBatcher Create(ClipConfig config, ulong seed)
    {
        string folder = Path.Combine(Path.GetTempPath(), $"serving-clip-tokenizer-{Guid.NewGuid():N}");
        try
        {
            ClipTokenizerWriter.Write(folder, ClipVocabulary.Build(config.VocabSize));
            var tokenizer = ClipTokenizer.Load(folder, config.MaxPositionEmbeddings);
            return new ShapesBatcher(tokenizer, ClipImageProcessor.Create(config.ImageSize, ClipModelWriter.ImageMean, ClipModelWriter.ImageStd), seed);
        }
        finally
        {
            Directory.Delete(folder, recursive: true);
        }
    }

    public PairBatch Batch(int step, int size)
    {
        var scenes = new Scene[size];
        var captions = new string[size];
        for (int i = 0; i < size; i++)
        {
            var random = new Random(HashCode.Combine(seed, step, i));
            scenes[i] = SceneSampler.Training(random);
            captions[i] = ShapesWorld.Captions.Training(scenes[i], random);
        }

        return Pairs(scenes, captions);
    }

    /// <summary>Renders and preprocesses <paramref name="scenes"/> (in parallel) and tokenizes <paramref name="captions"/>.</summary>
    public PairBatch Pairs(IReadOnlyList<Scene> scenes, IReadOnlyList<string> captions)
    {
        float[] pixels = Pixels(scenes);
        (int[] ids, int length) = Ids(captions);
        return new PairBatch(pixels, ids, scenes.Count, length, scenes, captions);
    }

    public float[] Pixels(IReadOnlyList<Scene> scenes)
    {
        int values = Processor.ValuesPerImage;
        var pixels = new float[scenes.Count * values];
        Parallel.For(0, scenes.Count, i => Processor.Process(SceneRenderer.Render(scenes[i]), pixels.AsSpan(i * values, values)));
        return pixels;
    }

    public (int[] Ids, int Length) Ids(IReadOnlyList<string> captions)
    {
        (long[] ids, _, int length) = Tokenizer.EncodeBatch(captions);
        return ([.. ids.Select(id => (int)id)], length);
    }
}
