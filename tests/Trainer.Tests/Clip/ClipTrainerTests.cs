using System.Numerics.Tensors;
using Serving.Runtime.Models.Clip;
using Serving.Trainer.Clip;
using Serving.Trainer.ShapesWorld;
using Serving.Trainer.Training;

namespace Serving.Trainer.Tests.Clip;

public class ClipTrainerTests
{
    private static TrainingOptions Options(int steps) => new()
    {
        Steps = steps, BatchSize = 16, LearningRate = 3e-3, WarmupSteps = 2, Seed = 4,
        SequenceLength = ClipTrainingPresets.Tiny.MaxPositionEmbeddings,
    };

    [Fact]
    public void TinyConfigLossFallsOnTheShapesWorld()
    {
        ClipTrainer trainer = ClipTrainer.Start(ClipTrainingPresets.Tiny, Options(30));
        PairBatch held = trainer.Batcher.Batch(step: 10_000, size: 32);
        double before = trainer.Loss(held);
        while (!trainer.IsFinished)
        {
            trainer.TrainStep();
        }

        double after = trainer.Loss(held);
        Assert.True(after < before - 0.2, $"held-out contrastive loss {before:F3} -> {after:F3}");
    }

    [Fact]
    public void CheckpointResumesWithTheSameWeights()
    {
        ClipTrainer straight = ClipTrainer.Start(ClipTrainingPresets.Tiny, Options(4));
        ClipTrainer interrupted = ClipTrainer.Start(ClipTrainingPresets.Tiny, Options(4));
        using var folder = new TempFolder();
        for (int i = 0; i < 4; i++)
        {
            straight.TrainStep();
        }

        interrupted.TrainStep();
        interrupted.TrainStep();
        interrupted.SaveCheckpoint(folder.File("checkpoint.bin"));
        ClipTrainer resumed = ClipTrainer.Resume(ClipCheckpoint.Load(folder.File("checkpoint.bin")));
        resumed.TrainStep();
        resumed.TrainStep();

        Assert.Equal(4, resumed.CompletedSteps);
        foreach (var p in straight.Parameters.All)
        {
            Assert.Equal(p.Value, resumed.Parameters[p.Name].Value);
        }
    }

    /// <summary>The folder ONNX Runtime loads embeds images and captions as the trainer does.</summary>
    [Fact]
    public void ExportedFolderEmbedsAsTheTrainer()
    {
        ClipTrainer trainer = ClipTrainer.Start(ClipTrainingPresets.Tiny, Options(3));
        while (!trainer.IsFinished)
        {
            trainer.TrainStep();
        }

        using var folder = new TempFolder();
        trainer.Export(folder.Path);
        using ClipModel model = ClipModel.Load(folder.Path);
        IReadOnlyList<Scene> scenes = SceneSampler.Balanced(repeats: 1, seed: 5).Take(6).ToList();
        string[] captions = ["a photo of a circle", "a large red striped star on the grass", "a square"];

        AssertClose(trainer.EmbedImages(scenes), model.EmbedImages([.. scenes.Select(SceneRenderer.Render)]));
        AssertClose(trainer.EmbedTexts(captions), model.EmbedTexts(captions));
    }

    private static void AssertClose(float[][] expected, float[][] actual)
    {
        Assert.Equal(expected.Length, actual.Length);
        for (int i = 0; i < expected.Length; i++)
        {
            double cosine = TensorPrimitives.CosineSimilarity(expected[i], actual[i]);
            Assert.True(cosine > 0.99999, $"row {i}: cosine {cosine:F7}");
        }
    }
}
