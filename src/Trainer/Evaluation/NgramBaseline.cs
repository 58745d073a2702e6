namespace Serving.Trainer.Evaluation;

/// <summary>
/// Count-based baselines a trained model must beat, fitted on the training tokens and scored
/// on every validation token: a unigram with add-one smoothing, and a bigram with interpolated
/// absolute discounting (d = 0.75, the usual Kneser–Ney discount) backing off to that unigram.
/// </summary>
public sealed class NgramBaseline
{
    /// <summary>Subtracted from every seen bigram count; the mass goes to the unigram.</summary>
    public const double Discount = 0.75;

    private readonly int _vocab;
    private readonly long[] _unigram;
    private readonly long _total;
    private readonly Dictionary<long, int> _bigram = [];
    private readonly long[] _contextCount;
    private readonly int[] _distinctFollowers;

    public NgramBaseline(int[] trainTokens, int vocabSize)
    {
        _vocab = vocabSize;
        _unigram = new long[vocabSize];
        _contextCount = new long[vocabSize];
        _distinctFollowers = new int[vocabSize];
        foreach (int token in trainTokens)
        {
            _unigram[token]++;
        }

        _total = trainTokens.Length;
        for (int i = 1; i < trainTokens.Length; i++)
        {
            long key = Key(trainTokens[i - 1], trainTokens[i]);
            int count = _bigram.GetValueOrDefault(key);
            if (count == 0)
            {
                _distinctFollowers[trainTokens[i - 1]]++;
            }

            _bigram[key] = count + 1;
            _contextCount[trainTokens[i - 1]]++;
        }
    }

    public double Unigram(int token) => (_unigram[token] + 1.0) / (_total + _vocab);

    /// <summary>p(token | previous): sums to 1 over the vocabulary for every previous token.</summary>
    public double Bigram(int previous, int token)
    {
        long context = _contextCount[previous];
        if (context == 0)
        {
            return Unigram(token);
        }

        double seen = Math.Max(_bigram.GetValueOrDefault(Key(previous, token)) - Discount, 0) / context;
        double backoff = Discount * _distinctFollowers[previous] / context;
        return seen + backoff * Unigram(token);
    }

    /// <summary>Mean −log p over every token of <paramref name="tokens"/> (the first scored by the unigram alone).</summary>
    public PerplexityResult Score(int[] tokens, bool bigram)
    {
        double total = -Math.Log(Unigram(tokens[0]));
        for (int i = 1; i < tokens.Length; i++)
        {
            total -= Math.Log(bigram ? Bigram(tokens[i - 1], tokens[i]) : Unigram(tokens[i]));
        }

        return new PerplexityResult(total / tokens.Length, tokens.Length, Windows: 1);
    }

    private long Key(int previous, int token) => (long)previous * _vocab + token;
}
