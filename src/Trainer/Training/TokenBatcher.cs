namespace Serving.Trainer.Training;

/// <summary>
/// Random windows of a token stream: batch k is a function of (seed, k) alone, so a resumed
/// run draws the same batches as one that never stopped, with no generator state to save.
/// </summary>
public sealed class TokenBatcher
{
    private readonly int[] _tokens;
    private readonly int _sequence, _batch;
    private readonly ulong _seed;

    public TokenBatcher(int[] tokens, int sequenceLength, int batchSize, ulong seed)
    {
        if (tokens.Length < sequenceLength + 1)
        {
            throw new ArgumentException($"the corpus has {tokens.Length} tokens; a window of {sequenceLength} needs {sequenceLength + 1}");
        }

        (_tokens, _sequence, _batch, _seed) = (tokens, sequenceLength, batchSize, seed);
    }

    /// <summary>Inputs and next-token targets for step <paramref name="step"/>, each B·S tokens.</summary>
    public (int[] Inputs, int[] Targets) Batch(int step)
    {
        var random = new Random(unchecked((int)(_seed * 0x9E3779B97F4A7C15UL ^ (ulong)step * 0xBF58476D1CE4E5B9UL)));
        var inputs = new int[_batch * _sequence];
        var targets = new int[_batch * _sequence];
        for (int b = 0; b < _batch; b++)
        {
            int start = random.Next(0, _tokens.Length - _sequence);
            _tokens.AsSpan(start, _sequence).CopyTo(inputs.AsSpan(b * _sequence));
            _tokens.AsSpan(start + 1, _sequence).CopyTo(targets.AsSpan(b * _sequence));
        }

        return (inputs, targets);
    }

    /// <summary>Consecutive non-overlapping windows covering <paramref name="tokens"/> (the tail that fills no window is dropped).</summary>
    public static IEnumerable<(int[] Inputs, int[] Targets)> Windows(int[] tokens, int sequenceLength)
    {
        for (int start = 0; start + sequenceLength < tokens.Length; start += sequenceLength)
        {
            yield return (tokens[start..(start + sequenceLength)], tokens[(start + 1)..(start + sequenceLength + 1)]);
        }
    }
}
