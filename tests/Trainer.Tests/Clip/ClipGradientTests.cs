using Serving.Runtime.Models.Clip;
using Serving.Trainer.Clip;
using Serving.Trainer.Layers;
using Serving.Trainer.Model;
using static Serving.Trainer.Tests.GradientCheck;

namespace Serving.Trainer.Tests.Clip;

/// <summary>The CLIP layers' and the whole dual encoder's backward passes against finite differences.</summary>
public class ClipGradientTests
{
    private const int Rows = 6, Dim = 16;

    [Fact]
    public void LayerNorm_InputGainAndBias()
    {
        float[] x = Random(Rows * Dim, 1, 2.0), gain = Random(Dim, 2), bias = Random(Dim, 3), r = Random(Rows * Dim, 4);
        double Objective()
        {
            var y = new float[x.Length];
            LayerNorm.Forward(x, gain, bias, 1e-5f, y, new float[Rows], new float[Rows]);
            return Dot(y, r);
        }

        float[] mean = new float[Rows], std = new float[Rows];
        LayerNorm.Forward(x, gain, bias, 1e-5f, new float[x.Length], mean, std);
        float[] dx = new float[x.Length], dGain = new float[Dim], dBias = new float[Dim];
        LayerNorm.Backward(x, gain, mean, std, r, dx, false, dGain, dBias);

        AssertMatches("dx", x, dx, Objective);
        AssertMatches("dGain", gain, dGain, Objective);
        AssertMatches("dBias", bias, dBias, Objective);
    }

    [Fact]
    public void QuickGelu_Input()
    {
        float[] u = Random(Rows * Dim, 5, 2.0), r = Random(Rows * Dim, 6);
        double Objective()
        {
            var y = new float[u.Length];
            QuickGelu.Forward(u, y);
            return Dot(y, r);
        }

        var du = new float[u.Length];
        QuickGelu.Backward(u, r, du);
        AssertMatches("du", u, du, Objective);
    }

    [Fact]
    public void BidirectionalAttention_QueryKeyValue()
    {
        var shape = new AttentionShape(2, 5, 2, 2, 4, 0.5f, int.MaxValue, Causal: false);
        int width = shape.QueryWidth, count = shape.Batch * shape.Sequence * width;
        float[] q = Random(count, 7), k = Random(count, 8), v = Random(count, 9), r = Random(count, 10);
        double Objective()
        {
            var output = new float[count];
            Attention.Forward(shape, q, k, v, new float[shape.ProbabilityCount], output);
            return Dot(output, r);
        }

        var probabilities = new float[shape.ProbabilityCount];
        Attention.Forward(shape, q, k, v, probabilities, new float[count]);
        float[] dq = new float[count], dk = new float[count], dv = new float[count];
        Attention.Backward(shape, q, k, v, probabilities, r, dq, dk, dv, new float[shape.Sequence * shape.Sequence]);

        Assert.All(probabilities, p => Assert.True(p > 0, "a bidirectional row sees every key"));
        AssertMatches("dq", q, dq, Objective);
        AssertMatches("dk", k, dk, Objective);
        AssertMatches("dv", v, dv, Objective);
    }

    [Fact]
    public void ContrastiveLoss_ImagesTextsAndScale()
    {
        const int Batch = 5, Projection = 6;
        float[] images = Random(Batch * Projection, 11), texts = Random(Batch * Projection, 12), scale = [1.5f];
        double Objective() => ContrastiveLoss.Forward(images, texts, Batch, Projection, scale[0], [], [], out _);

        float[] dImages = new float[images.Length], dTexts = new float[texts.Length];
        ContrastiveLoss.Forward(images, texts, Batch, Projection, scale[0], dImages, dTexts, out double dScale);

        AssertMatches("dImages", images, dImages, Objective, epsilon: 1e-3);
        AssertMatches("dTexts", texts, dTexts, Objective, epsilon: 1e-3);
        AssertMatches("dScale", scale, [(float)dScale], Objective, epsilon: 1e-3);
    }

    [Fact]
    public void ContrastiveLoss_IsLogBatchWhenEveryPairLooksAlike()
    {
        const int Batch = 4, Projection = 3;
        float[] same = [.. Enumerable.Repeat(new[] { 1f, 2f, 3f }, Batch).SelectMany(row => row)];
        double loss = ContrastiveLoss.Forward(same, same, Batch, Projection, 2f, [], [], out _);
        Assert.Equal(Math.Log(Batch), loss, 5);
    }

    /// <summary>Every tensor of both towers and the temperature, through the contrastive loss.</summary>
    [Fact]
    public void WholeModel_EveryParameter()
    {
        const int Batch = 3, Length = 7;
        ClipConfig config = ClipTestConfigs.Tiny;
        var parameters = ClipParameters.FromValues(config, spec => ClipWeights.Random(spec, seed: 5), logitScale: 1f);
        var model = new ClipTrainingModel(parameters);
        float[] pixels = Random(Batch * 3 * config.ImageSize * config.ImageSize, 13);
        int[] ids = ClipTestConfigs.Captions(Batch, Length, seed: 14);
        double Objective() => model.Loss(pixels, ids, Batch, Length);

        model.LossAndGradients(pixels, ids, Batch, Length);
        var failures = new List<string>();
        foreach (Parameter p in parameters.All)
        {
            float[] gradient = (float[])p.Gradient.Clone();
            // A step of ~1% of the tensor's own scale: embeddings are N(0, 0.02²), gains ~1.
            double rms = Math.Sqrt(Dot(p.Value, p.Value) / p.Value.Length);
            if (p.Name.EndsWith("k_proj.bias", StringComparison.Ordinal))
            {
                // Softmax is invariant to a shift every key shares: the true gradient is 0, and the
                // finite difference (~1e-5) is float32 noise.
                Assert.All(gradient, g => Assert.True(Math.Abs(g) < 1e-6, $"{p.Name}: {g}"));
                continue;
            }

            try
            {
                AssertMatches(p.Name, p.Value, gradient, Objective, epsilon: Math.Max(1e-3, 1e-2 * rms), tolerance: 2e-2);
            }
            catch (Xunit.Sdk.XunitException e)
            {
                failures.Add(e.Message);
            }
        }

        Assert.True(failures.Count == 0, string.Join("\n", failures));
    }
}
