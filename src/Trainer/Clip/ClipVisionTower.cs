using Serving.Runtime.Models.Clip;
using Serving.Trainer.Layers;
using Serving.Trainer.Model;

namespace Serving.Trainer.Clip;

/// <summary>
/// The vision tower of <see cref="ClipGraph.BuildVision"/>: patch convolution as a matrix
/// product, class token, positions, pre-LN, bidirectional encoder, post-LN of the class
/// state, projection.
/// </summary>
internal sealed class ClipVisionTower
{
    private readonly ClipConfig _config;
    private readonly Parameter _patchWeight, _classEmbedding, _positions, _preGain, _preBias, _postGain, _postBias, _projection;
    private readonly ClipEncoderLayer[] _layers;
    private float[][] _states = [];
    private float[] _patches = [], _embedded = [], _classStates = [], _classNormed = [];
    private float[] _preMean = [], _preStd = [], _postMean = [], _postStd = [];
    private int _batch;

    public ClipVisionTower(ClipParameters parameters)
    {
        _config = parameters.Config;
        _patchWeight = parameters[ClipWeights.PatchEmbedding];
        _classEmbedding = parameters[ClipWeights.ClassEmbedding];
        _positions = parameters[ClipWeights.VisionPositions];
        _preGain = parameters[ClipWeights.VisionPreNorm + ".weight"];
        _preBias = parameters[ClipWeights.VisionPreNorm + ".bias"];
        _postGain = parameters[ClipWeights.VisionPostNorm + ".weight"];
        _postBias = parameters[ClipWeights.VisionPostNorm + ".bias"];
        _projection = parameters[ClipWeights.VisualProjection];
        _layers = [.. Enumerable.Range(0, _config.Vision.NumHiddenLayers)
            .Select(i => new ClipEncoderLayer(parameters, ClipTower.Vision, i, _config.Vision, causal: false))];
    }

    private int Tokens => _config.NumPatches + 1;
    private int PatchWidth => ClipConfig.NumChannels * _config.PatchSize * _config.PatchSize;

    /// <summary><paramref name="pixels"/> is <c>[batch, 3, size, size]</c>, preprocessed; returns <c>[batch, projection]</c>.</summary>
    public float[] Forward(float[] pixels, int batch)
    {
        int h = _config.Vision.HiddenSize, n = _config.NumPatches, rows = batch * Tokens;
        _batch = batch;
        _patches = new float[batch * n * PatchWidth];
        Patches.Extract(pixels, batch, _config.ImageSize, _config.PatchSize, _patches);
        _embedded = new float[batch * n * h];
        Blas.Gemm(false, true, batch * n, h, PatchWidth, 1f, _patches, PatchWidth, _patchWeight.Value, PatchWidth, 0f, _embedded, h);
        var tokens = new float[rows * h];
        for (int b = 0; b < batch; b++)
        {
            _classEmbedding.Value.CopyTo(tokens, b * Tokens * h);
            _embedded.AsSpan(b * n * h, n * h).CopyTo(tokens.AsSpan((b * Tokens + 1) * h));
            Span<float> image = tokens.AsSpan(b * Tokens * h, Tokens * h);
            System.Numerics.Tensors.TensorPrimitives.Add(image, _positions.Value, image);
        }

        _states = [tokens, .. Enumerable.Range(0, _layers.Length + 1).Select(_ => new float[rows * h])];
        (_preMean, _preStd) = (new float[rows], new float[rows]);
        LayerNorm.Forward(tokens, _preGain.Value, _preBias.Value, _config.Vision.LayerNormEps, _states[1], _preMean, _preStd);
        for (int i = 0; i < _layers.Length; i++)
        {
            _layers[i].Forward(_states[i + 1], batch, Tokens, _states[i + 2]);
        }

        _classStates = new float[batch * h];
        for (int b = 0; b < batch; b++)
        {
            _states[^1].AsSpan(b * Tokens * h, h).CopyTo(_classStates.AsSpan(b * h, h));
        }

        (_classNormed, _postMean, _postStd) = (new float[batch * h], new float[batch], new float[batch]);
        LayerNorm.Forward(_classStates, _postGain.Value, _postBias.Value, _config.Vision.LayerNormEps, _classNormed, _postMean, _postStd);
        var embeds = new float[batch * _config.ProjectionDim];
        Linear.Forward(_classNormed, _projection.Value, batch, h, _config.ProjectionDim, embeds);
        return embeds;
    }

    public void Backward(float[] dEmbeds)
    {
        int h = _config.Vision.HiddenSize, n = _config.NumPatches, rows = _batch * Tokens;
        var dNormed = new float[_batch * h];
        Linear.Backward(_classNormed, _projection.Value, dEmbeds, _batch, h, _config.ProjectionDim, dNormed, false, _projection.Gradient);
        var dClass = new float[_batch * h];
        LayerNorm.Backward(_classStates, _postGain.Value, _postMean, _postStd, dNormed, dClass, false, _postGain.Gradient, _postBias.Gradient);
        var d = new float[rows * h];
        for (int b = 0; b < _batch; b++)
        {
            dClass.AsSpan(b * h, h).CopyTo(d.AsSpan(b * Tokens * h, h));
        }

        for (int i = _layers.Length - 1; i >= 0; i--)
        {
            _layers[i].Backward(d, d);
        }

        var dTokens = new float[rows * h];
        LayerNorm.Backward(_states[0], _preGain.Value, _preMean, _preStd, d, dTokens, false, _preGain.Gradient, _preBias.Gradient);
        var dEmbedded = new float[_batch * n * h];
        for (int b = 0; b < _batch; b++)
        {
            Span<float> image = dTokens.AsSpan(b * Tokens * h, Tokens * h);
            System.Numerics.Tensors.TensorPrimitives.Add(_positions.Gradient, image, _positions.Gradient);
            System.Numerics.Tensors.TensorPrimitives.Add(_classEmbedding.Gradient, image[..h], _classEmbedding.Gradient);
            image[h..].CopyTo(dEmbedded.AsSpan(b * n * h, n * h));
        }

        Blas.Gemm(true, false, h, PatchWidth, _batch * n, 1f, dEmbedded, h, _patches, PatchWidth, 1f, _patchWeight.Gradient, PatchWidth);
    }
}
