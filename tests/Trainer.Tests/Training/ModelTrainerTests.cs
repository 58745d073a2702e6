using Serving.Trainer.Training;

namespace Serving.Trainer.Tests.Training;

public class ModelTrainerTests
{
    private static readonly TrainingOptions Options = new()
    {
        Steps = 30, SequenceLength = 16, BatchSize = 4, LearningRate = 1e-2, WarmupSteps = 3, Seed = 5,
    };

    private static int[] Tokens => TestConfigs.RepeatedTokens(23, 40, TestConfigs.Tiny.VocabSize, seed: 6);

    [Fact]
    public void LossFallsOnRepeatedText()
    {
        ModelTrainer trainer = ModelTrainer.Start(TestConfigs.Tiny, Options, Tokens);
        var losses = new List<double>();
        while (!trainer.IsFinished)
        {
            losses.Add(trainer.TrainStep().Loss);
        }

        // ln(1024) = 6.93 at the start; a 23-token cycle is learnable to near zero.
        Assert.InRange(losses[0], 6.0, 7.5);
        Assert.True(losses.TakeLast(5).Average() < 2.0, $"last losses {string.Join(", ", losses.TakeLast(5).Select(l => l.ToString("F2")))}");
    }

    [Fact]
    public void ResumedRunTakesTheSameNextStep()
    {
        using var folder = new TempFolder();
        string path = folder.File("run.ckpt");
        ModelTrainer original = ModelTrainer.Start(TestConfigs.Tiny, Options, Tokens);
        for (int i = 0; i < 3; i++)
        {
            original.TrainStep();
        }

        original.SaveCheckpoint(path);
        StepResult expected = original.TrainStep();

        ModelTrainer resumed = ModelTrainer.Resume(path, Tokens);
        StepResult actual = resumed.TrainStep();

        Assert.Equal(4, actual.Step);
        Assert.Equal(expected.Loss, actual.Loss, 10);
        Assert.Equal(original.Parameters.All[5].Value, resumed.Parameters.All[5].Value);
    }

    [Fact]
    public void SameSeedSameLosses()
    {
        static double[] Run()
        {
            ModelTrainer trainer = ModelTrainer.Start(TestConfigs.Tiny, Options, Tokens);
            return [trainer.TrainStep().Loss, trainer.TrainStep().Loss, trainer.TrainStep().Loss];
        }

        Assert.Equal(Run(), Run());
    }

    [Fact]
    public void LearningRateWarmsUpThenDecays()
    {
        var schedule = new Optimization.LearningRateSchedule(Peak: 1.0, WarmupSteps: 10, TotalSteps: 110, FinalRatio: 0.1);

        Assert.Equal(0.1, schedule.At(1), 12);
        Assert.Equal(1.0, schedule.At(10), 12);
        Assert.Equal(0.55, schedule.At(60), 12);
        Assert.Equal(0.1, schedule.At(110), 12);
    }
}
