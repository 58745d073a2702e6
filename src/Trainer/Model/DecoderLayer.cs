using Serving.Runtime.Models.Gemma3;
using Serving.Trainer.Layers;

namespace Serving.Trainer.Model;

/// <summary>
/// One Gemma 3 decoder layer with sandwich norms, forward and backward:
/// mid = x + norm_post(o_proj(attn(rope(qnorm(q)), rope(knorm(k)), v))) over a = norm_in(x);
/// out = mid + norm_postff(down(gelu(gate(m))·up(m))) over m = norm_pre(mid).
/// </summary>
internal sealed class DecoderLayer
{
    private readonly Dims _dims;
    private readonly float _eps;
    private readonly Rope _rope;
    private readonly int _window;
    private readonly float _scale;
    private readonly Parameter _inputNorm, _q, _k, _v, _qNorm, _kNorm, _o, _postAttentionNorm, _preMlpNorm, _gate, _up, _down, _postMlpNorm;

    public DecoderLayer(ParameterSet parameters, int layer, Rope rope)
    {
        Gemma3Config config = parameters.Config;
        Parameter P(string name) => parameters[Gemma3Weights.Layer(layer, name + ".weight")];
        _dims = Dims.Of(config);
        _eps = (float)config.RmsNormEps;
        _rope = rope;
        _window = config.LayerKind(layer) == AttentionKind.Sliding ? config.SlidingWindow : int.MaxValue;
        _scale = (float)(1.0 / Math.Sqrt(config.QueryPreAttnScalar));
        (_inputNorm, _q, _k, _v) = (P("input_layernorm"), P("self_attn.q_proj"), P("self_attn.k_proj"), P("self_attn.v_proj"));
        (_qNorm, _kNorm, _o) = (P("self_attn.q_norm"), P("self_attn.k_norm"), P("self_attn.o_proj"));
        (_postAttentionNorm, _preMlpNorm, _postMlpNorm) = (P("post_attention_layernorm"), P("pre_feedforward_layernorm"), P("post_feedforward_layernorm"));
        (_gate, _up, _down) = (P("mlp.gate_proj"), P("mlp.up_proj"), P("mlp.down_proj"));
    }

    private AttentionShape Shape(int batch, int sequence) =>
        new(batch, sequence, _dims.QueryHeads, _dims.KvHeads, _dims.HeadDim, _scale, _window);

    /// <summary>Reads <see cref="LayerBuffers.Input"/>, fills the other buffers, writes the layer's output.</summary>
    public void Forward(LayerBuffers s, ReadOnlySpan<int> positions, int batch, Span<float> output)
    {
        int n = positions.Length, h = _dims.Hidden;
        RmsNorm.Forward(s.Input, _inputNorm.Value, _eps, s.A, s.InputRms);
        ProjectHeads(s.A, _q, _qNorm, _dims.QueryHeads, s.Q, s.QRot, s.QRms, positions);
        ProjectHeads(s.A, _k, _kNorm, _dims.KvHeads, s.K, s.KRot, s.KRms, positions);
        Linear.Forward(s.A, _v.Value, n, h, _dims.KvWidth, s.V);
        Attention.Forward(Shape(batch, n / batch), s.QRot, s.KRot, s.V, s.Probabilities, s.Attended);
        Linear.Forward(s.Attended, _o.Value, n, _dims.QueryWidth, h, s.O);
        AddNormalized(s.Input, s.O, _postAttentionNorm, s.PostAttentionRms, s.Middle);

        RmsNorm.Forward(s.Middle, _preMlpNorm.Value, _eps, s.M, s.PreMlpRms);
        Linear.Forward(s.M, _gate.Value, n, h, _dims.Intermediate, s.Gate);
        Linear.Forward(s.M, _up.Value, n, h, _dims.Intermediate, s.Up);
        GeGlu.Forward(s.Gate, s.Up, s.Activated);
        Linear.Forward(s.Activated, _down.Value, n, _dims.Intermediate, h, s.Y);
        AddNormalized(s.Middle, s.Y, _postMlpNorm, s.PostMlpRms, output);
    }

    /// <summary>
    /// Takes dL/d(output) in <paramref name="dx"/> and leaves dL/d(input) there; adds every
    /// weight gradient of the layer.
    /// </summary>
    public void Backward(LayerBuffers s, ReadOnlySpan<int> positions, int batch, float[] dx, BackwardScratch g)
    {
        int n = positions.Length, h = _dims.Hidden, inter = _dims.Intermediate;
        // MLP branch: out = mid + norm(y); dMid = dOut + d(norm_pre(mid)).
        RmsNorm.Backward(s.Y, _postMlpNorm.Value, s.PostMlpRms, dx, g.DHidden, false, _postMlpNorm.Gradient);
        Linear.Backward(s.Activated, _down.Value, g.DHidden, n, inter, h, g.DActivated, false, _down.Gradient);
        GeGlu.Backward(s.Gate, s.Up, g.DActivated, g.DGate, g.DUp);
        Linear.Backward(s.M, _gate.Value, g.DGate, n, h, inter, g.DNormed, false, _gate.Gradient);
        Linear.Backward(s.M, _up.Value, g.DUp, n, h, inter, g.DNormed, true, _up.Gradient);
        dx.CopyTo(g.DMiddle, 0);
        RmsNorm.Backward(s.Middle, _preMlpNorm.Value, s.PreMlpRms, g.DNormed, g.DMiddle, true, _preMlpNorm.Gradient);

        // Attention branch: mid = x + norm(o); dx = dMid + d(norm_in(x)).
        RmsNorm.Backward(s.O, _postAttentionNorm.Value, s.PostAttentionRms, g.DMiddle, g.DHidden, false, _postAttentionNorm.Gradient);
        Linear.Backward(s.Attended, _o.Value, g.DHidden, n, _dims.QueryWidth, h, g.DAttended, false, _o.Gradient);
        Attention.Backward(Shape(batch, n / batch), s.QRot, s.KRot, s.V, s.Probabilities, g.DAttended, g.DQuery, g.DKey, g.DValue, g.Scores);
        Linear.Backward(s.A, _v.Value, g.DValue, n, h, _dims.KvWidth, g.DNormed, false, _v.Gradient);
        ProjectHeadsBackward(s.A, _k, _kNorm, _dims.KvHeads, s.K, s.KRms, g.DKey, positions, g);
        ProjectHeadsBackward(s.A, _q, _qNorm, _dims.QueryHeads, s.Q, s.QRms, g.DQuery, positions, g);
        g.DMiddle.CopyTo(dx, 0);
        RmsNorm.Backward(s.Input, _inputNorm.Value, s.InputRms, g.DNormed, dx, true, _inputNorm.Gradient);
    }

    /// <summary>raw = a·W; rotated = rope(rmsnorm_per_head(raw)) (QK-norm, then RoPE).</summary>
    private void ProjectHeads(float[] a, Parameter w, Parameter norm, int heads, float[] raw, float[] rotated, float[] rms, ReadOnlySpan<int> positions)
    {
        Linear.Forward(a, w.Value, positions.Length, _dims.Hidden, heads * _dims.HeadDim, raw);
        RmsNorm.Forward(raw, norm.Value, _eps, rotated, rms);
        _rope.Apply(rotated, heads, positions, inverse: false);
    }

    /// <summary>Turns dRotated back through RoPE (in place), the head norm and the projection; adds into g.DNormed (da).</summary>
    private void ProjectHeadsBackward(float[] a, Parameter w, Parameter norm, int heads, float[] raw, float[] rms, float[] dRotated,
        ReadOnlySpan<int> positions, BackwardScratch g)
    {
        _rope.Apply(dRotated, heads, positions, inverse: true);
        Span<float> dRaw = g.DProjection.AsSpan(0, raw.Length);
        RmsNorm.Backward(raw, norm.Value, rms, dRotated, dRaw, false, norm.Gradient);
        Linear.Backward(a, w.Value, dRaw, positions.Length, _dims.Hidden, heads * _dims.HeadDim, g.DNormed, true, w.Gradient);
    }

    /// <summary>output = residual + rmsnorm(branch) (the sandwich norm's second half).</summary>
    private void AddNormalized(float[] residual, float[] branch, Parameter norm, float[] rms, Span<float> output)
    {
        RmsNorm.Forward(branch, norm.Value, _eps, output, rms);
        for (int i = 0; i < residual.Length; i++)
        {
            output[i] += residual[i];
        }
    }
}
