using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Layers;

namespace Serving.Trainer.Model;

/// <summary>
/// The Gemma 3 decoder the builder emits, as a trainable float32 model: scaled embedding,
/// decoder layers, final norm, tied LM head, cross-entropy. Each batch is B sequences of S
/// tokens at positions 0…S−1. Buffers are sized for the first (B, S) seen and reused; a new
/// shape reallocates them. One instance serves one thread.
/// </summary>
public sealed class Gemma3TrainingModel
{
    private readonly Gemma3Config _config;
    private readonly DecoderLayer[] _layers;
    private readonly Parameter _embedding, _finalNorm;
    private readonly float _embedScale;
    private readonly int _maxPositions;
    private Buffers? _buffers;

    public Gemma3TrainingModel(ParameterSet parameters, int maxPositions)
    {
        _config = parameters.Config;
        Parameters = parameters;
        _maxPositions = maxPositions;
        var ropes = new Dictionary<double, Rope>();
        _layers = new DecoderLayer[_config.NumHiddenLayers];
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            double ropeBase = _config.RopeBase(layer);
            if (!ropes.TryGetValue(ropeBase, out Rope? rope))
            {
                ropes[ropeBase] = rope = new Rope(_config.HeadDim, ropeBase, maxPositions);
            }

            _layers[layer] = new DecoderLayer(parameters, layer, rope);
        }

        _embedding = parameters[Gemma3Weights.Embedding];
        _finalNorm = parameters[Gemma3Weights.FinalNorm];
        // Gemma3ScaledWordEmbedding multiplies by sqrt(hidden) rounded to the weights' dtype.
        _embedScale = (float)Math.Sqrt(_config.HiddenSize);
    }

    public ParameterSet Parameters { get; }

    /// <summary>Mean cross-entropy of <paramref name="targets"/> given <paramref name="inputs"/> (both B·S tokens).</summary>
    public double Loss(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch)
    {
        Buffers b = Forward(inputs, batch);
        return CrossEntropy.Forward(b.Logits, targets.ToArray(), _config.VocabSize, null);
    }

    /// <summary>Like <see cref="Loss"/>, and adds dLoss/dθ to every parameter's gradient.</summary>
    public double LossAndGradients(ReadOnlySpan<int> inputs, ReadOnlySpan<int> targets, int batch)
    {
        Buffers b = Forward(inputs, batch);
        double loss = CrossEntropy.Forward(b.Logits, targets.ToArray(), _config.VocabSize, b.Logits);
        Backward(b, inputs, batch);
        return loss;
    }

    /// <summary>Logits [B·S, V] of the last forward pass's shape, copied out.</summary>
    public float[] Logits(ReadOnlySpan<int> inputs, int batch) => (float[])Forward(inputs, batch).Logits.Clone();

    private Buffers Forward(ReadOnlySpan<int> inputs, int batch)
    {
        if (batch < 1 || inputs.Length % batch != 0 || inputs.Length / batch > _maxPositions)
        {
            throw new ArgumentException($"{inputs.Length} tokens do not split into {batch} sequences of at most {_maxPositions}");
        }

        foreach (int id in inputs)
        {
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)id, (uint)_config.VocabSize, nameof(inputs));
        }

        Buffers b = BuffersFor(batch, inputs.Length / batch);
        int h = _config.HiddenSize, n = inputs.Length;
        Embedding.Forward(_embedding.Value, inputs, h, _embedScale, b.Layers[0].Input);
        for (int layer = 0; layer < _layers.Length; layer++)
        {
            Span<float> output = layer + 1 < _layers.Length ? b.Layers[layer + 1].Input : b.Final;
            _layers[layer].Forward(b.Layers[layer], b.Positions, batch, output);
        }

        RmsNorm.Forward(b.Final, _finalNorm.Value, (float)_config.RmsNormEps, b.FinalNormed, b.FinalRms);
        Blas.Gemm(false, true, n, _config.VocabSize, h, 1f, b.FinalNormed, h, _embedding.Value, h, 0f, b.Logits, _config.VocabSize);
        return b;
    }

    /// <summary>Expects dLoss/dLogits in <c>b.Logits</c>; the tied table gets both the head's and the lookup's gradient.</summary>
    private void Backward(Buffers b, ReadOnlySpan<int> inputs, int batch)
    {
        int h = _config.HiddenSize, n = inputs.Length, vocab = _config.VocabSize;
        Blas.Gemm(false, false, n, h, vocab, 1f, b.Logits, vocab, _embedding.Value, h, 0f, b.DFinalNormed, h);
        Blas.Gemm(true, false, vocab, h, n, 1f, b.Logits, vocab, b.FinalNormed, h, 1f, _embedding.Gradient, h);
        RmsNorm.Backward(b.Final, _finalNorm.Value, b.FinalRms, b.DFinalNormed, b.DResidual, false, _finalNorm.Gradient);
        for (int layer = _layers.Length - 1; layer >= 0; layer--)
        {
            _layers[layer].Backward(b.Layers[layer], b.Positions, batch, b.DResidual, b.Scratch);
        }

        Embedding.Backward(inputs, b.DResidual, h, _embedScale, _embedding.Gradient);
    }

    private Buffers BuffersFor(int batch, int sequence)
    {
        if (_buffers is not { } b || b.Batch != batch || b.Sequence != sequence)
        {
            _buffers = b = new Buffers(batch, sequence, _config);
        }

        return b;
    }

    private sealed class Buffers
    {
        public Buffers(int batch, int sequence, Gemma3Config config)
        {
            (Batch, Sequence) = (batch, sequence);
            int n = batch * sequence, h = config.HiddenSize;
            var dims = Dims.Of(config);
            Positions = [.. Enumerable.Range(0, n).Select(i => i % sequence)];
            Layers = [.. Enumerable.Range(0, config.NumHiddenLayers).Select(_ => new LayerBuffers(n, batch, sequence, dims))];
            Scratch = new BackwardScratch(n, sequence, dims);
            (Final, FinalNormed, DFinalNormed, DResidual) = (new float[n * h], new float[n * h], new float[n * h], new float[n * h]);
            FinalRms = new float[n];
            Logits = new float[n * config.VocabSize];
        }

        public int Batch { get; }
        public int Sequence { get; }
        public int[] Positions { get; }
        public LayerBuffers[] Layers { get; }
        public BackwardScratch Scratch { get; }
        public float[] Final { get; }
        public float[] FinalNormed { get; }
        public float[] FinalRms { get; }
        public float[] DFinalNormed { get; }
        public float[] DResidual { get; }
        public float[] Logits { get; }
    }
}
