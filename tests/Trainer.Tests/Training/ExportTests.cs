using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Trainer.Training;

namespace Serving.Trainer.Tests.Training;

/// <summary>The exported folder, run by ONNX Runtime, computes what the trainer computes.</summary>
public class ExportTests
{
    [Fact]
    public void ExportedFolderLogitsEqualTrainerForward()
    {
        // Five steps move the norm weights off zero, so (1 + w) is exercised in both graphs.
        var options = new TrainingOptions { Steps = 5, SequenceLength = 12, BatchSize = 2, LearningRate = 1e-2, Seed = 8 };
        int[] tokens = TestConfigs.RepeatedTokens(17, 10, TestConfigs.Tiny.VocabSize, seed: 9);
        ModelTrainer trainer = ModelTrainer.Start(TestConfigs.Tiny, options, tokens);
        while (!trainer.IsFinished)
        {
            trainer.TrainStep();
        }

        using var folder = new TempFolder();
        trainer.Export(folder.Path);
        int[] input = tokens[3..15];
        float[] expected = trainer.Logits(input);

        using DecoderModel model = DecoderModel.Load(folder.Path);
        using var runner = new ModelRunner(model);
        int layers = model.Signature.Layers.Count;
        var past = Enumerable.Range(0, layers).Select(_ => runner.EmptyPast(1)).ToArray();
        var pastValues = Enumerable.Range(0, layers).Select(_ => runner.EmptyPast(1)).ToArray();
        long[] ids = [.. input.Select(t => (long)t)], mask = [.. input.Select(_ => 1L)], positions = [.. Enumerable.Range(0, input.Length).Select(p => (long)p)];
        using DecoderOutputs outputs = runner.Run(new DecoderBatch(1, input.Length, ids, mask, positions, past, pastValues));

        int vocab = TestConfigs.Tiny.VocabSize;
        for (int s = 0; s < input.Length; s++)
        {
            ReadOnlySpan<float> actual = outputs.Logits(0, s);
            double worst = 0, scale = 0;
            for (int v = 0; v < vocab; v++)
            {
                worst = Math.Max(worst, Math.Abs(actual[v] - expected[s * vocab + v]));
                scale = Math.Max(scale, Math.Abs(expected[s * vocab + v]));
            }

            Assert.True(worst / scale < 1e-4, $"position {s}: relative error {worst / scale:E2}");
        }

        foreach (var value in past.Concat(pastValues))
        {
            value.Dispose();
        }
    }
}
