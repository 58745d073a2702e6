using Serving.Runtime.Models.Clip;
using Serving.Trainer.Layers;
using Serving.Trainer.Model;

namespace Serving.Trainer.Clip;

/// <summary>
/// The text tower of <see cref="ClipGraph.BuildText"/>: token + position embeddings, causal
/// encoder, final LayerNorm, the state at each row's first end token, projection.
/// </summary>
internal sealed class ClipTextTower
{
    private readonly ClipConfig _config;
    private readonly Parameter _tokens, _positions, _normGain, _normBias, _projection;
    private readonly ClipEncoderLayer[] _layers;
    private float[][] _states = [];
    private float[] _final = [], _pooled = [], _mean = [], _std = [];
    private int[] _ids = [], _eos = [];
    private int _batch, _length;

    public ClipTextTower(ClipParameters parameters)
    {
        _config = parameters.Config;
        _tokens = parameters[ClipWeights.TokenEmbedding];
        _positions = parameters[ClipWeights.TextPositions];
        _normGain = parameters[ClipWeights.TextFinalNorm + ".weight"];
        _normBias = parameters[ClipWeights.TextFinalNorm + ".bias"];
        _projection = parameters[ClipWeights.TextProjection];
        _layers = [.. Enumerable.Range(0, _config.Text.NumHiddenLayers)
            .Select(i => new ClipEncoderLayer(parameters, ClipTower.Text, i, _config.Text, causal: true))];
    }

    /// <summary><paramref name="ids"/> is <c>[batch, length]</c>, every row holding an end token; returns <c>[batch, projection]</c>.</summary>
    public float[] Forward(int[] ids, int batch, int length)
    {
        if (length > _config.MaxPositionEmbeddings)
        {
            throw new ArgumentException($"{length} tokens exceed max_position_embeddings ({_config.MaxPositionEmbeddings})");
        }

        int h = _config.Text.HiddenSize, rows = batch * length;
        (_ids, _batch, _length) = (ids, batch, length);
        _states = [.. Enumerable.Range(0, _layers.Length + 1).Select(_ => new float[rows * h])];
        Embedding.Forward(_tokens.Value, ids, h, 1f, _states[0]);
        for (int r = 0; r < rows; r++)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(_states[0].AsSpan(r * h, h), _positions.Value.AsSpan(r % length * h, h), _states[0].AsSpan(r * h, h));
        }

        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].Forward(_states[i], batch, length, _states[i + 1]);
        }

        (_final, _mean, _std) = (new float[rows * h], new float[rows], new float[rows]);
        LayerNorm.Forward(_states[^1], _normGain.Value, _normBias.Value, _config.Text.LayerNormEps, _final, _mean, _std);
        _eos = [.. Enumerable.Range(0, batch).Select(b => FirstEnd(ids.AsSpan(b * length, length)))];
        _pooled = new float[batch * h];
        for (int b = 0; b < batch; b++)
        {
            _final.AsSpan((b * length + _eos[b]) * h, h).CopyTo(_pooled.AsSpan(b * h, h));
        }

        var embeds = new float[batch * _config.ProjectionDim];
        Linear.Forward(_pooled, _projection.Value, batch, h, _config.ProjectionDim, embeds);
        return embeds;
    }

    public void Backward(float[] dEmbeds)
    {
        int h = _config.Text.HiddenSize, rows = _batch * _length;
        var dPooled = new float[_batch * h];
        Linear.Backward(_pooled, _projection.Value, dEmbeds, _batch, h, _config.ProjectionDim, dPooled, false, _projection.Gradient);
        var dFinal = new float[rows * h];
        for (int b = 0; b < _batch; b++)
        {
            dPooled.AsSpan(b * h, h).CopyTo(dFinal.AsSpan((b * _length + _eos[b]) * h, h));
        }

        var d = new float[rows * h];
        LayerNorm.Backward(_states[^1], _normGain.Value, _mean, _std, dFinal, d, false, _normGain.Gradient, _normBias.Gradient);
        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            _layers[i].Backward(d, d);
        }

        Embedding.Backward(_ids, d, h, 1f, _tokens.Gradient);
        for (int r = 0; r < rows; r++)
        {
            Span<float> row = _positions.Gradient.AsSpan(r % _length * h, h);
            System.Numerics.Tensors.TensorPrimitives.Add(row, d.AsSpan(r * h, h), row);
        }
    }

    private int FirstEnd(ReadOnlySpan<int> row)
    {
        int index = row.IndexOf(_config.EosTokenId);
        return index >= 0 ? index : throw new ArgumentException("a caption row has no end token");
    }
}
