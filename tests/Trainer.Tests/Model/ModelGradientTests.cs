using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Model;
using static Serving.Trainer.Tests.GradientCheck;

namespace Serving.Trainer.Tests.Model;

/// <summary>The whole decoder's gradient, tensor by tensor, against finite differences of the loss.</summary>
public class ModelGradientTests
{
    [Fact]
    public void EveryTensorsGradientMatchesFiniteDifferences()
    {
        Gemma3Config config = TestConfigs.Tiny;
        // Random norm weights (not the zeros training starts from), so every (1 + w) is tested.
        ParameterSet parameters = ParameterSet.FromValues(config, spec => Gemma3Weights.Random(spec, seed: 3));
        var model = new Gemma3TrainingModel(parameters, maxPositions: 16);
        int[] tokens = TestConfigs.RepeatedTokens(9, 3, config.VocabSize, seed: 4);
        int[] inputs = [.. tokens[..10], .. tokens[5..15]], targets = [.. tokens[1..11], .. tokens[6..16]];

        parameters.ZeroGradients();
        model.LossAndGradients(inputs, targets, batch: 2);
        var gradients = parameters.All.ToDictionary(p => p.Name, p => (float[])p.Gradient.Clone());

        foreach (Parameter p in parameters.All)
        {
            // ε at 1% of the tensor's RMS: at a fixed 1e-2 the 0.02-scale embedding moved by half
            // its size and the difference quotient was off by 60% (RMSNorm is far from linear there).
            double epsilon = 1e-2 * Math.Sqrt(GradientCheck.Dot(p.Value, p.Value) / p.Value.Length);
            AssertMatches(p.Name, p.Value, gradients[p.Name], () => model.Loss(inputs, targets, batch: 2), epsilon, tolerance: 1e-2);
        }
    }
}
