using Serving.Trainer.Model;

namespace Serving.Trainer.Optimization;

/// <summary>AdamW hyper-parameters (decoupled weight decay, Loshchilov &amp; Hutter 2019).</summary>
public sealed record AdamWSettings(double Beta1 = 0.9, double Beta2 = 0.95, double Epsilon = 1e-8, double WeightDecay = 0.1);

/// <summary>
/// One AdamW update over a <see cref="ParameterSet"/>; the moments live in each
/// <see cref="Parameter"/> so a checkpoint saves them with the values.
/// </summary>
public static class AdamW
{
    /// <summary>Applies update number <paramref name="step"/> (1-based, for bias correction) at <paramref name="learningRate"/>.</summary>
    public static void Step(ParameterSet parameters, AdamWSettings settings, int step, double learningRate) =>
        Step(parameters.All, settings, step, learningRate);

    /// <summary>The same over any list of parameters (the CLIP trainer's).</summary>
    public static void Step(IReadOnlyList<Parameter> parameters, AdamWSettings settings, int step, double learningRate)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(step, 1);
        float b1 = (float)settings.Beta1, b2 = (float)settings.Beta2, eps = (float)settings.Epsilon;
        float correction1 = (float)(1 - Math.Pow(settings.Beta1, step));
        float correction2 = (float)(1 - Math.Pow(settings.Beta2, step));
        float lr = (float)learningRate;
        foreach (Parameter p in parameters)
        {
            float decay = p.Decays ? 1f - (float)(learningRate * settings.WeightDecay) : 1f;
            float[] value = p.Value, grad = p.Gradient, m = p.FirstMoment, v = p.SecondMoment;
            for (int i = 0; i < value.Length; i++)
            {
                m[i] = b1 * m[i] + (1 - b1) * grad[i];
                v[i] = b2 * v[i] + (1 - b2) * grad[i] * grad[i];
                float mHat = m[i] / correction1, vHat = v[i] / correction2;
                value[i] = value[i] * decay - lr * mHat / (MathF.Sqrt(vHat) + eps);
            }
        }
    }

    /// <summary>Scales every gradient so their global L2 norm is at most <paramref name="maxNorm"/>; returns the norm before.</summary>
    public static double ClipGradients(ParameterSet parameters, double maxNorm) => ClipGradients(parameters.All, maxNorm);

    public static double ClipGradients(IReadOnlyList<Parameter> parameters, double maxNorm)
    {
        double norm = Parameter.GradientNorm(parameters);
        if (norm > maxNorm)
        {
            float scale = (float)(maxNorm / norm);
            foreach (Parameter p in parameters)
            {
                float[] grad = p.Gradient;
                for (int i = 0; i < grad.Length; i++)
                {
                    grad[i] *= scale;
                }
            }
        }

        return norm;
    }
}
