namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// The scalar kernels of the Gemma 3 reference forward pass, in float64. Written for
/// obviousness, not speed: every loop reads like the formula in the Hugging Face code.
/// </summary>
public static class Gemma3ReferenceMath
{
    /// <summary>y[o] = Σ_i x[i]·w[i·outDim + o]: <paramref name="w"/> is an ONNX MatMul right operand [in, out].</summary>
    public static double[] Linear(ReadOnlySpan<double> x, float[] w, int outDim)
    {
        if (w.Length != x.Length * outDim)
        {
            throw new ArgumentException($"weight has {w.Length} values, expected {x.Length} x {outDim}", nameof(w));
        }

        var y = new double[outDim];
        for (int i = 0; i < x.Length; i++)
        {
            double xi = x[i];
            int row = i * outDim;
            for (int o = 0; o < outDim; o++)
            {
                y[o] += xi * w[row + o];
            }
        }

        return y;
    }

    /// <summary>Gemma's RMSNorm: x / sqrt(mean(x²) + eps) · (1 + w), in place.</summary>
    public static void RmsNorm(Span<double> x, ReadOnlySpan<float> w, double eps)
    {
        if (w.Length != x.Length)
        {
            throw new ArgumentException($"norm weight has {w.Length} values for a vector of {x.Length}", nameof(w));
        }

        double sumOfSquares = 0;
        foreach (double value in x)
        {
            sumOfSquares += value * value;
        }

        double inverseRms = 1.0 / Math.Sqrt(sumOfSquares / x.Length + eps);
        for (int i = 0; i < x.Length; i++)
        {
            x[i] = x[i] * inverseRms * (1.0 + w[i]);
        }
    }

    /// <summary>RoPE inverse frequency of band f: base^(−2f/D).</summary>
    public static double InverseFrequency(int band, int headDim, double ropeBase) =>
        Math.Pow(ropeBase, -2.0 * band / headDim);

    /// <summary>
    /// Rotate-half RoPE, in place, on one head: band f pairs x[f] with x[f + D/2] and turns
    /// the pair by position·inv_freq[f].
    /// </summary>
    public static void ApplyRope(Span<double> x, double position, double ropeBase)
    {
        int half = x.Length / 2;
        for (int f = 0; f < half; f++)
        {
            (double sin, double cos) = Math.SinCos(position * InverseFrequency(f, x.Length, ropeBase));
            double first = x[f], second = x[f + half];
            x[f] = first * cos - second * sin;
            x[f + half] = second * cos + first * sin;
        }
    }

    /// <summary>gelu_pytorch_tanh: 0.5x(1 + tanh(sqrt(2/π)(x + 0.044715x³))).</summary>
    public static double GeluTanh(double x) =>
        0.5 * x * (1.0 + Math.Tanh(Math.Sqrt(2.0 / Math.PI) * (x + 0.044715 * x * x * x)));

    /// <summary>Numerically stable softmax, in place.</summary>
    public static void Softmax(Span<double> scores)
    {
        double max = double.NegativeInfinity;
        foreach (double score in scores)
        {
            max = Math.Max(max, score);
        }

        double sum = 0;
        for (int i = 0; i < scores.Length; i++)
        {
            scores[i] = Math.Exp(scores[i] - max);
            sum += scores[i];
        }

        for (int i = 0; i < scores.Length; i++)
        {
            scores[i] /= sum;
        }
    }

    public static double Dot(ReadOnlySpan<double> a, ReadOnlySpan<double> b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }
}
