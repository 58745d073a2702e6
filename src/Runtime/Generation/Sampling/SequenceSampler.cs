namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// Picks one sequence's tokens under its <see cref="SamplingParams"/>, in vLLM's order:
/// penalties → greedy argmax or (÷ temperature → top-k → top-p → min-p → seeded draw).
/// Buffers are sized once for the vocabulary (one float per token, plus an int and two bits
/// per token when penalties are on), so <see cref="Sample"/> allocates nothing.
/// Not thread-safe: one engine thread owns it.
/// </summary>
public sealed class SequenceSampler
{
    /// <summary>vLLM treats temperatures below 1e-5 as greedy: 1/T would overflow the logits' scale.</summary>
    private const double GreedyBelow = 1e-5;

    /// <summary>
    /// Top-p first looks among this many best tokens: real LLM distributions put ≥ 0.9 of their
    /// mass there at almost every step, and a heap of 1,024 costs one pass over 262,144 logits.
    /// </summary>
    private const int TopPCandidates = 1024;

    private readonly int _vocabSize;
    private readonly bool _isGreedy;
    private readonly float _inverseTemperature;
    private readonly bool _hasTopK;
    private readonly double _topP;
    private readonly float _minP;
    private readonly int _topLogprobCount;
    private readonly float[] _weights;
    private readonly TopCandidates? _candidates;
    private readonly TopCandidates? _topLogprobs;
    private readonly LogitPenalties? _penalties;
    private SeededRandom _random;

    /// <summary>The first index of the largest logit (ties go to the lower id, as PyTorch's argmax).</summary>
    public static int ArgMax(ReadOnlySpan<float> logits) => ProbabilityMath.ArgMax(logits);

    public SequenceSampler(SamplingParams parameters, int vocabSize, ReadOnlySpan<int> promptIds, long defaultSeed)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        ArgumentOutOfRangeException.ThrowIfLessThan(vocabSize, 1);
        if (parameters.Validate() is { } invalid)
        {
            throw new ArgumentException($"{invalid.Param}: {invalid.Message}", nameof(parameters));
        }

        _vocabSize = vocabSize;
        _isGreedy = parameters.Temperature < GreedyBelow;
        _inverseTemperature = _isGreedy ? 1 : (float)(1 / parameters.Temperature);
        _hasTopK = parameters.TopK > 0 && parameters.TopK < vocabSize;
        _topP = parameters.TopP;
        _minP = (float)parameters.MinP;
        _weights = new float[vocabSize];
        int candidates = _hasTopK ? parameters.TopK : _topP < 1 ? Math.Min(TopPCandidates, vocabSize) : 0;
        _candidates = candidates > 0 && !_isGreedy ? new TopCandidates(candidates) : null;
        _topLogprobCount = Math.Min(parameters.TopLogprobs ?? 0, vocabSize);
        _topLogprobs = _topLogprobCount > 0 ? new TopCandidates(_topLogprobCount) : null;
        _penalties = LogitPenalties.AreActive(parameters) ? new LogitPenalties(parameters, vocabSize, promptIds) : null;
        _random = new SeededRandom(parameters.Seed ?? defaultSeed);
    }

    /// <summary>
    /// Picks the next token from raw logits (length vocabSize), records it for the penalties,
    /// and returns its id. <paramref name="logprob"/> is the log-softmax of the RAW logits at
    /// the chosen id (vLLM's default: before penalties and temperature). When TopLogprobs is
    /// set, <paramref name="top"/> (length ≥ TopLogprobs) receives the best raw-logprob
    /// alternatives best first (ties to the lower id) and <paramref name="topCount"/> says how many.
    /// </summary>
    public int Sample(ReadOnlySpan<float> logits, out float logprob, Span<TokenLogprob> top, out int topCount)
    {
        ThrowIfWrongLength(logits);
        if (top.Length < _topLogprobCount)
        {
            throw new ArgumentException($"top needs room for {_topLogprobCount} entries, has {top.Length}", nameof(top));
        }

        // The raw softmax's exp pass doubles as the sampling weights when nothing changes the logits.
        float rawMax = ProbabilityMath.Max(logits);
        double rawSum = ProbabilityMath.ExpInto(logits, _weights, rawMax, 1);
        double logNormalizer = rawMax + Math.Log(rawSum);
        bool weightsReady = _penalties is null && _inverseTemperature == 1;

        int id = _isGreedy ? ChooseGreedy(logits) : ChooseRandom(weightsReady ? rawSum : ComputeWeights(logits));
        logprob = (float)(logits[id] - logNormalizer);
        topCount = FillTopLogprobs(logits, logNormalizer, top);
        _penalties?.Record(id);
        return id;
    }

    /// <summary>
    /// The same pick as the other overload (same seed, same tokens) without logprobs, for
    /// requests that did not ask for them: greedy decoding and temperatures other than 1 skip
    /// the raw softmax, one exp pass over the vocabulary (~0.3 ms at 262,144 tokens).
    /// </summary>
    public int Sample(ReadOnlySpan<float> logits)
    {
        ThrowIfWrongLength(logits);
        int id = _isGreedy ? ChooseGreedy(logits) : ChooseRandom(ComputeWeights(logits));
        _penalties?.Record(id);
        return id;
    }

    private void ThrowIfWrongLength(ReadOnlySpan<float> logits)
    {
        if (logits.Length != _vocabSize)
        {
            throw new ArgumentException($"expected {_vocabSize} logits, got {logits.Length}", nameof(logits));
        }
    }

    private int ChooseGreedy(ReadOnlySpan<float> logits)
    {
        if (_penalties is null)
        {
            return ProbabilityMath.ArgMax(logits);
        }

        _penalties.Apply(logits, _weights);
        return ProbabilityMath.ArgMax(_weights);
    }

    /// <summary>Fills the weights exp((penalized − max) / T) and returns their sum.</summary>
    private double ComputeWeights(ReadOnlySpan<float> logits)
    {
        ReadOnlySpan<float> source = logits;
        if (_penalties is not null)
        {
            _penalties.Apply(logits, _weights);
            source = _weights;
        }

        return ProbabilityMath.ExpInto(source, _weights, ProbabilityMath.Max(source), _inverseTemperature);
    }

    /// <summary>Draws from the weights (the best token's is exp(0) = 1), whose sum is <paramref name="totalWeight"/>.</summary>
    private int ChooseRandom(double totalWeight)
    {
        if (_candidates is null)
        {
            // No top-k or top-p: the whole vocabulary, less what min-p drops.
            return _minP == 0
                ? DrawFromVocabulary(0, int.MaxValue, totalWeight)
                : DrawAbove(_minP, int.MaxValue);
        }

        _candidates.SelectFrom(_weights);
        ReadOnlySpan<float> weights = _candidates.Values;
        int kept = weights.Length;
        if (_topP < 1)
        {
            double pool = _hasTopK ? Sum(weights) : totalWeight;
            kept = ShortestPrefixReaching(weights, _topP * pool);
            if (kept < 0 && !_hasTopK)
            {
                return DrawAfterFullTopP(weights[^1]);
            }

            kept = kept < 0 ? weights.Length : kept;
        }

        float minWeight = _minP * weights[0];
        while (kept > 1 && weights[kept - 1] < minWeight)
        {
            kept--;
        }

        return DrawFromCandidates(kept);
    }

    /// <summary>Top-p when the candidates hold too little mass: a cut over the whole vocabulary.</summary>
    private int DrawAfterFullTopP(float worstCandidate)
    {
        ReadOnlySpan<float> weights = _weights;
        double total = ProbabilityMath.MassAbove(weights, 0, strictly: false);
        (float cut, int tiedKept) = TopPCut.Find(weights, _topP * total, worstCandidate);
        // Min-p keeps every weight ≥ min_p (× the best, 1); both filters keep a best-first prefix.
        return _minP > cut ? DrawAbove(_minP, int.MaxValue) : DrawAbove(cut, tiedKept);
    }

    private int DrawFromCandidates(int kept)
    {
        ReadOnlySpan<float> weights = _candidates!.Values[..kept];
        double target = _random.NextDouble() * Sum(weights);
        for (int i = 0; i < weights.Length; i++)
        {
            target -= weights[i];
            if (target < 0)
            {
                return _candidates.Ids[i];
            }
        }

        // Reached only when rounding leaves target ≥ 0 after the last weight: take the likeliest.
        return _candidates.Ids[0];
    }

    /// <summary>Draws among the weights above <paramref name="cut"/> and the first <paramref name="tiedKept"/> equal to it.</summary>
    private int DrawAbove(float cut, int tiedKept)
    {
        ReadOnlySpan<float> weights = _weights;
        double mass = 0;
        int tiesLeft = tiedKept;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] > cut || (weights[i] == cut && tiesLeft-- > 0))
            {
                mass += weights[i];
            }
        }

        return DrawFromVocabulary(cut, tiedKept, mass);
    }

    /// <summary>One scan in id order over the kept weights, whose sum is <paramref name="mass"/>.</summary>
    private int DrawFromVocabulary(float cut, int tiedKept, double mass)
    {
        ReadOnlySpan<float> weights = _weights;
        double target = _random.NextDouble() * mass;
        int tiesLeft = tiedKept;
        int lastKept = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            if (weights[i] > cut || (weights[i] == cut && tiesLeft-- > 0))
            {
                target -= weights[i];
                if (target < 0)
                {
                    return i;
                }

                lastKept = weights[i] > 0 ? i : lastKept;
            }
        }

        // Reached only when rounding leaves target ≥ 0 after the last kept weight.
        return lastKept;
    }

    private int FillTopLogprobs(ReadOnlySpan<float> logits, double logNormalizer, Span<TokenLogprob> top)
    {
        if (_topLogprobs is null)
        {
            return 0;
        }

        _topLogprobs.SelectFrom(logits);
        ReadOnlySpan<float> values = _topLogprobs.Values;
        ReadOnlySpan<int> ids = _topLogprobs.Ids;
        for (int i = 0; i < values.Length; i++)
        {
            top[i] = new TokenLogprob(ids[i], (float)(values[i] - logNormalizer));
        }

        return values.Length;
    }

    /// <summary>The length of the shortest prefix whose sum reaches target, or −1 if none does.</summary>
    private static int ShortestPrefixReaching(ReadOnlySpan<float> weights, double target)
    {
        double mass = 0;
        for (int i = 0; i < weights.Length; i++)
        {
            mass += weights[i];
            if (mass >= target)
            {
                return i + 1;
            }
        }

        return -1;
    }

    private static double Sum(ReadOnlySpan<float> weights)
    {
        double sum = 0;
        foreach (float weight in weights)
        {
            sum += weight;
        }

        return sum;
    }
}
