namespace Serving.Runtime.Generation;

/// <summary>
/// Picks the next token from logits: argmax at temperature 0, else a draw from
/// softmax(logits / T) with a seeded generator (same seed, same draws).
/// </summary>
public sealed class Sampler
{
    private readonly double _temperature;
    private readonly Random _random;
    private double[] _weights = [];

    public Sampler(double temperature, int? seed)
    {
        if (!IsValidTemperature(temperature))
        {
            throw new ArgumentOutOfRangeException(nameof(temperature), temperature, "temperature must be a finite number ≥ 0");
        }

        _temperature = temperature;
        _random = seed is { } s ? new Random(s) : new Random();
    }

    /// <summary>A finite number ≥ 0 (NaN fails too).</summary>
    public static bool IsValidTemperature(double temperature) => temperature >= 0 && !double.IsInfinity(temperature);

    public int Sample(ReadOnlySpan<float> logits) => _temperature == 0 ? ArgMax(logits) : Draw(logits);

    /// <summary>The first index of the largest logit (ties go to the lower id, as in PyTorch's argmax).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits)
    {
        int best = 0;
        for (int i = 1; i < logits.Length; i++)
        {
            if (logits[i] > logits[best])
            {
                best = i;
            }
        }

        return best;
    }

    private int Draw(ReadOnlySpan<float> logits)
    {
        if (_weights.Length < logits.Length)
        {
            _weights = new double[logits.Length];
        }

        float max = logits[ArgMax(logits)];
        double total = 0;
        for (int i = 0; i < logits.Length; i++)
        {
            total += _weights[i] = Math.Exp((logits[i] - max) / _temperature);
        }

        double target = _random.NextDouble() * total;
        for (int i = 0; i < logits.Length; i++)
        {
            target -= _weights[i];
            if (target < 0)
            {
                return i;
            }
        }

        return ArgMax(logits);
    }
}
