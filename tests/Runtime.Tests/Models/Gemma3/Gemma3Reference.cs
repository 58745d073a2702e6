using Serving.Runtime.Models.Gemma3;
using static Serving.Runtime.Tests.Models.Gemma3.Gemma3ReferenceMath;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>
/// Test oracle: the Gemma 3 text decoder (Hugging Face Gemma3ForCausalLM, eager attention,
/// no softcapping, no RoPE scaling) in plain C# with float64 arithmetic. Weights are the
/// float32 tensors our ONNX export uses, linear weights stored [in, out]. No KV cache: every
/// call recomputes the whole sequence, so it shares no code path with cached decoding.
/// </summary>
public sealed partial class Gemma3Reference
{
    private readonly Gemma3Config _config;
    private readonly IReadOnlyDictionary<string, float[]> _weights;

    public Gemma3Reference(Gemma3Config config, IReadOnlyDictionary<string, float[]> weights)
    {
        config.Validate();
        CheckWeights(config, weights);
        _config = config;
        _weights = weights;
    }

    /// <summary>
    /// Logits [S][V] for one sequence whose tokens sit at positions firstPosition,
    /// firstPosition + 1, …; every token sees itself and the tokens before it.
    /// </summary>
    public double[][] Forward(IReadOnlyList<int> tokenIds, long firstPosition = 0)
    {
        ArgumentOutOfRangeException.ThrowIfZero(tokenIds.Count, nameof(tokenIds));
        ArgumentOutOfRangeException.ThrowIfNegative(firstPosition);

        double[][] hidden = Embed(tokenIds);
        for (int layer = 0; layer < _config.NumHiddenLayers; layer++)
        {
            DecoderLayer(layer, hidden, firstPosition);
        }

        return Logits(hidden);
    }

    private float[] Weight(string name) => _weights[name];

    private float[] LayerWeight(int layer, string name) => _weights[$"model.layers.{layer}.{name}.weight"];

    private double[][] Embed(IReadOnlyList<int> tokenIds)
    {
        float[] table = Weight("model.embed_tokens.weight");
        int h = _config.HiddenSize;
        double normalizer = Math.Sqrt(h);
        var hidden = new double[tokenIds.Count][];
        for (int t = 0; t < tokenIds.Count; t++)
        {
            int token = tokenIds[t];
            if ((uint)token >= (uint)_config.VocabSize)
            {
                throw new ArgumentOutOfRangeException(nameof(tokenIds), $"token {token} at index {t} is outside the vocabulary of {_config.VocabSize}");
            }

            hidden[t] = new double[h];
            for (int i = 0; i < h; i++)
            {
                hidden[t][i] = table[(long)token * h + i] * normalizer;
            }
        }

        return hidden;
    }

    /// <summary>Sandwich norms around attention and MLP; updates <paramref name="hidden"/> in place.</summary>
    private void DecoderLayer(int layer, double[][] hidden, long firstPosition)
    {
        double[][] attention = Attention(layer, Normalized(hidden, LayerWeight(layer, "input_layernorm")), firstPosition);
        AddInPlace(hidden, Normalized(attention, LayerWeight(layer, "post_attention_layernorm")));

        double[][] mlp = Mlp(layer, Normalized(hidden, LayerWeight(layer, "pre_feedforward_layernorm")));
        AddInPlace(hidden, Normalized(mlp, LayerWeight(layer, "post_feedforward_layernorm")));
    }

    private double[][] Attention(int layer, double[][] x, long firstPosition)
    {
        int d = _config.HeadDim, numHeads = _config.NumAttentionHeads, numKvHeads = _config.NumKeyValueHeads;
        var queries = new double[x.Length][];
        var keys = new double[x.Length][];
        var values = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            double position = firstPosition + t;
            queries[t] = NormalizedRotatedHeads(layer, x[t], "q", numHeads, position);
            keys[t] = NormalizedRotatedHeads(layer, x[t], "k", numKvHeads, position);
            values[t] = Linear(x[t], LayerWeight(layer, "self_attn.v_proj"), numKvHeads * d);
        }

        var output = new double[x.Length][];
        var heads = new double[numHeads * d];
        for (int t = 0; t < x.Length; t++)
        {
            Array.Clear(heads);
            for (int head = 0; head < numHeads; head++)
            {
                AttendOneHead(layer, queries, keys, values, t, head, heads.AsSpan(head * d, d));
            }

            output[t] = Linear(heads, LayerWeight(layer, "self_attn.o_proj"), _config.HiddenSize);
        }

        return output;
    }

    /// <summary>Projects to heads, then per head RMSNorm(1 + w) over head_dim, then RoPE.</summary>
    private double[] NormalizedRotatedHeads(int layer, double[] x, string which, int numHeads, double position)
    {
        int d = _config.HeadDim;
        double[] projected = Linear(x, LayerWeight(layer, $"self_attn.{which}_proj"), numHeads * d);
        float[] norm = LayerWeight(layer, $"self_attn.{which}_norm");
        for (int head = 0; head < numHeads; head++)
        {
            Span<double> slice = projected.AsSpan(head * d, d);
            RmsNorm(slice, norm, _config.RmsNormEps);
            ApplyRope(slice, position, _config.RopeBase(layer));
        }

        return projected;
    }

    /// <summary>Causal (and, on sliding layers, windowed) softmax attention of query t, head <paramref name="head"/>.</summary>
    private void AttendOneHead(int layer, double[][] queries, double[][] keys, double[][] values, int t, int head, Span<double> output)
    {
        int d = _config.HeadDim;
        int kvHead = head / _config.NumQueryGroups;
        // Sliding layers see key j only when t − j < window, i.e. j > t − window.
        int firstKey = _config.LayerKind(layer) == AttentionKind.Sliding ? Math.Max(0, t - _config.SlidingWindow + 1) : 0;
        double scale = 1.0 / Math.Sqrt(_config.QueryPreAttnScalar);

        ReadOnlySpan<double> query = queries[t].AsSpan(head * d, d);
        var weights = new double[t - firstKey + 1];
        for (int j = firstKey; j <= t; j++)
        {
            weights[j - firstKey] = Dot(query, keys[j].AsSpan(kvHead * d, d)) * scale;
        }

        Softmax(weights);
        for (int j = firstKey; j <= t; j++)
        {
            ReadOnlySpan<double> value = values[j].AsSpan(kvHead * d, d);
            for (int i = 0; i < d; i++)
            {
                output[i] += weights[j - firstKey] * value[i];
            }
        }
    }

    /// <summary>GeGLU: down(gelu_tanh(gate(x)) · up(x)).</summary>
    private double[][] Mlp(int layer, double[][] x)
    {
        var output = new double[x.Length][];
        for (int t = 0; t < x.Length; t++)
        {
            double[] gate = Linear(x[t], LayerWeight(layer, "mlp.gate_proj"), _config.IntermediateSize);
            double[] up = Linear(x[t], LayerWeight(layer, "mlp.up_proj"), _config.IntermediateSize);
            for (int i = 0; i < gate.Length; i++)
            {
                gate[i] = GeluTanh(gate[i]) * up[i];
            }

            output[t] = Linear(gate, LayerWeight(layer, "mlp.down_proj"), _config.HiddenSize);
        }

        return output;
    }

    /// <summary>Final norm, then the tied LM head: logits[v] = Σ_i h[i]·embed[v, i].</summary>
    private double[][] Logits(double[][] hidden)
    {
        float[] table = Weight("model.embed_tokens.weight");
        int h = _config.HiddenSize;
        double[][] normed = Normalized(hidden, Weight("model.norm.weight"));
        var logits = new double[hidden.Length][];
        for (int t = 0; t < hidden.Length; t++)
        {
            logits[t] = new double[_config.VocabSize];
            for (int v = 0; v < _config.VocabSize; v++)
            {
                long row = (long)v * h;
                double sum = 0;
                for (int i = 0; i < h; i++)
                {
                    sum += normed[t][i] * table[row + i];
                }

                logits[t][v] = sum;
            }
        }

        return logits;
    }

    private double[][] Normalized(double[][] rows, float[] weight)
    {
        var result = new double[rows.Length][];
        for (int t = 0; t < rows.Length; t++)
        {
            result[t] = (double[])rows[t].Clone();
            RmsNorm(result[t], weight, _config.RmsNormEps);
        }

        return result;
    }

    private static void AddInPlace(double[][] target, double[][] addend)
    {
        for (int t = 0; t < target.Length; t++)
        {
            for (int i = 0; i < target[t].Length; i++)
            {
                target[t][i] += addend[t][i];
            }
        }
    }
}
