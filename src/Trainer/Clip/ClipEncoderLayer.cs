using Serving.Runtime.Models.Clip;
using Serving.Trainer.Layers;
using Serving.Trainer.Model;

namespace Serving.Trainer.Clip;

/// <summary>
/// One pre-LN CLIP encoder layer, as <see cref="ClipGraph"/> builds it:
/// h = x + out_proj(attention(LN1(x))); y = h + fc2(quick_gelu(fc1(LN2(h)))). Keeps the
/// activations of its last forward pass for <see cref="Backward"/>; buffers grow to the
/// largest batch seen and are reused.
/// </summary>
internal sealed class ClipEncoderLayer
{
    private readonly ClipTowerConfig _config;
    private readonly bool _causal;
    private readonly Parameter _norm1Gain, _norm1Bias, _norm2Gain, _norm2Bias;
    private readonly (Parameter Weight, Parameter Bias) _q, _k, _v, _out, _fc1, _fc2;
    private float[] _x = [], _n1 = [], _q1 = [], _k1 = [], _v1 = [], _context = [], _h = [], _n2 = [], _up = [], _act = [];
    private float[] _mean1 = [], _std1 = [], _mean2 = [], _std2 = [], _probabilities = [];
    private int _batch, _sequence;

    public ClipEncoderLayer(ClipParameters parameters, ClipTower tower, int layer, ClipTowerConfig config, bool causal)
    {
        _config = config;
        _causal = causal;
        Parameter P(string name) => parameters[ClipWeights.Layer(tower, layer, name)];
        (Parameter, Parameter) Linear(string name) => (P($"{name}.weight"), P($"{name}.bias"));
        (_norm1Gain, _norm1Bias, _norm2Gain, _norm2Bias) = (P("layer_norm1.weight"), P("layer_norm1.bias"), P("layer_norm2.weight"), P("layer_norm2.bias"));
        (_q, _k, _v, _out) = (Linear("self_attn.q_proj"), Linear("self_attn.k_proj"), Linear("self_attn.v_proj"), Linear("self_attn.out_proj"));
        (_fc1, _fc2) = (Linear("mlp.fc1"), Linear("mlp.fc2"));
    }

    private AttentionShape Shape => new(_batch, _sequence, _config.NumAttentionHeads, _config.NumAttentionHeads, _config.HeadDim,
        1f / MathF.Sqrt(_config.HeadDim), int.MaxValue, _causal);

    /// <summary>x and y are <c>[batch·sequence, hidden]</c>; x must stay unchanged until <see cref="Backward"/>.</summary>
    public void Forward(float[] x, int batch, int sequence, float[] y)
    {
        int rows = batch * sequence, h = _config.HiddenSize, inter = _config.IntermediateSize;
        (_batch, _sequence, _x) = (batch, sequence, x);
        Ensure(rows, h, inter, Shape.ProbabilityCount);
        float eps = _config.LayerNormEps;
        LayerNorm.Forward(x, _norm1Gain.Value, _norm1Bias.Value, eps, _n1, _mean1.AsSpan(0, rows), _std1.AsSpan(0, rows));
        Project(_n1, _q, rows, h, h, _q1);
        Project(_n1, _k, rows, h, h, _k1);
        Project(_n1, _v, rows, h, h, _v1);
        Attention.Forward(Shape, _q1, _k1, _v1, _probabilities, _context);
        Project(_context, _out, rows, h, h, _h);
        Add(x, _h, rows * h);
        LayerNorm.Forward(_h, _norm2Gain.Value, _norm2Bias.Value, eps, _n2, _mean2.AsSpan(0, rows), _std2.AsSpan(0, rows));
        Project(_n2, _fc1, rows, h, inter, _up);
        QuickGelu.Forward(_up.AsSpan(0, rows * inter), _act);
        Project(_act, _fc2, rows, inter, h, y);
        Add(_h, y, rows * h);
    }

    /// <summary>Adds every weight's gradient; writes dL/dx into <paramref name="dx"/> (which may be <paramref name="dy"/>).</summary>
    public void Backward(float[] dy, float[] dx)
    {
        int rows = _batch * _sequence, h = _config.HiddenSize, inter = _config.IntermediateSize;
        var dAct = new float[rows * inter];
        var dh = new float[rows * h];
        var dn = new float[rows * h];
        ProjectBackward(_act, _fc2, dy, rows, inter, h, dAct);
        QuickGelu.Backward(_up.AsSpan(0, rows * inter), dAct, dAct);
        ProjectBackward(_n2, _fc1, dAct, rows, h, inter, dn);
        dy.AsSpan(0, rows * h).CopyTo(dh);
        LayerNorm.Backward(_h, _norm2Gain.Value, _mean2.AsSpan(0, rows), _std2.AsSpan(0, rows), dn, dh, true, _norm2Gain.Gradient, _norm2Bias.Gradient);

        var dContext = new float[rows * h];
        ProjectBackward(_context, _out, dh, rows, h, h, dContext);
        float[] dq = new float[rows * h], dk = new float[rows * h], dv = new float[rows * h];
        Attention.Backward(Shape, _q1, _k1, _v1, _probabilities, dContext, dq, dk, dv, new float[_sequence * _sequence]);
        ProjectBackward(_n1, _q, dq, rows, h, h, dn);
        ProjectBackward(_n1, _k, dk, rows, h, h, dn, accumulate: true);
        ProjectBackward(_n1, _v, dv, rows, h, h, dn, accumulate: true);
        dh.CopyTo(dx, 0);
        LayerNorm.Backward(_x, _norm1Gain.Value, _mean1.AsSpan(0, rows), _std1.AsSpan(0, rows), dn, dx, true, _norm1Gain.Gradient, _norm1Bias.Gradient);
    }

    private static void Project(float[] x, (Parameter Weight, Parameter Bias) linear, int rows, int inDim, int outDim, float[] y)
    {
        Linear.Forward(x, linear.Weight.Value, rows, inDim, outDim, y);
        Bias.Forward(linear.Bias.Value, y.AsSpan(0, rows * outDim));
    }

    private static void ProjectBackward(float[] x, (Parameter Weight, Parameter Bias) linear, float[] dy, int rows, int inDim, int outDim,
        float[] dx, bool accumulate = false)
    {
        Span<float> dyRows = dy.AsSpan(0, rows * outDim);
        Linear.Backward(x, linear.Weight.Value, dyRows, rows, inDim, outDim, dx, accumulate, linear.Weight.Gradient);
        Bias.Backward(dyRows, linear.Bias.Gradient);
    }

    private static void Add(ReadOnlySpan<float> source, Span<float> destination, int count) =>
        System.Numerics.Tensors.TensorPrimitives.Add(destination[..count], source[..count], destination[..count]);

    private void Ensure(int rows, int h, int inter, int probabilities)
    {
        (_n1, _q1, _k1, _v1, _context, _h, _n2) = (Grown(_n1, rows * h), Grown(_q1, rows * h), Grown(_k1, rows * h), Grown(_v1, rows * h),
            Grown(_context, rows * h), Grown(_h, rows * h), Grown(_n2, rows * h));
        (_up, _act) = (Grown(_up, rows * inter), Grown(_act, rows * inter));
        (_mean1, _std1, _mean2, _std2) = (Grown(_mean1, rows), Grown(_std1, rows), Grown(_mean2, rows), Grown(_std2, rows));
        _probabilities = Grown(_probabilities, probabilities);
    }

    private static float[] Grown(float[] buffer, int length) => buffer.Length >= length ? buffer : new float[length];
}
