using Serving.Runtime.Models;
using Serving.Trainer.Evaluation;
using Serving.Trainer.Training;

namespace Serving.Trainer.Tests.Evaluation;

public class OnnxPerplexityTests
{
    [Fact]
    public void MatchesTheTrainersOwnValidationLoss()
    {
        var options = new TrainingOptions { Steps = 8, SequenceLength = 12, BatchSize = 2, LearningRate = 1e-2, Seed = 3 };
        int[] tokens = TestConfigs.RepeatedTokens(11, 12, TestConfigs.Tiny.VocabSize, seed: 4);
        ModelTrainer trainer = ModelTrainer.Start(TestConfigs.Tiny, options, tokens);
        while (!trainer.IsFinished)
        {
            trainer.TrainStep();
        }

        using var folder = new TempFolder();
        trainer.Export(folder.Path);
        using DecoderModel model = DecoderModel.Load(folder.Path);

        PerplexityResult result = OnnxPerplexity.Evaluate(model, tokens, sequenceLength: 12, maxWindows: 5);

        Assert.Equal(5, result.Windows);
        Assert.Equal(60, result.Tokens);
        Assert.Equal(trainer.Evaluate(tokens, maxWindows: 5), result.Loss, 4);
    }
}
