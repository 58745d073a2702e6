using System.Numerics.Tensors;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// TriAttention (REFERENCE §1): the attention a cached key will draw from future queries,
/// predicted from the calibrated pre-RoPE query centre. For a post-RoPE key k̃ and a query
/// centre E[q] at position t + δ, the RoPE logit is Σ_f Re(E[q_f]·e^{iω_f(t+δ)}·conj(k̃_f));
/// averaged over the 17 offsets δ = 1, 2, 4, …, 65536 it becomes Σ_f Re(W_f·conj(k̃_f)) with
/// W_f = E[q_f]·mean_δ e^{iω_f(t+δ)}, so a key costs two dot products and a norm. The
/// modulus term Σ_f (E|q_f| − |E[q_f]|)·|k_f| adds what the spread of queries around the
/// centre can still draw. Scores are z-scored per query head, then the max over the query
/// heads sharing the KV head is taken.
/// </summary>
public sealed class TriAttentionPolicy : IKvEvictionPolicy
{
    /// <summary>δ = 2^0 … 2^16.</summary>
    public const int NumOffsets = 17;

    private readonly KvCalibration _calibration;
    private readonly Gemma3Config _config;
    private readonly double[][] _inverseFrequencies;
    private readonly float[] _weightRe, _weightIm, _spread, _modulus;
    private float[] _raw = [];

    public TriAttentionPolicy(KvCalibration calibration, Gemma3Config config)
    {
        calibration.CheckFits(config);
        (_calibration, _config) = (calibration, config);
        int bands = config.HeadDim / 2;
        _inverseFrequencies = new double[config.NumHiddenLayers][];
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            double theta = config.RopeBase(layer);
            _inverseFrequencies[layer] = new double[bands];
            for (int f = 0; f < bands; f++)
            {
                _inverseFrequencies[layer][f] = Math.Pow(theta, -2.0 * f / config.HeadDim);
            }
        }

        (_weightRe, _weightIm, _spread, _modulus) = (new float[bands], new float[bands], new float[bands], new float[bands]);
    }

    public string Name => "triattention";

    public void Score(in KvHeadKeys keys, Span<float> scores)
    {
        if (_raw.Length < keys.Slots)
        {
            _raw = new float[keys.Slots * 2];
        }

        Span<float> raw = _raw.AsSpan(0, keys.Slots);
        scores[..keys.Slots].Fill(float.NegativeInfinity);
        int group = _config.NumQueryGroups;
        for (int head = keys.KvHead * group; head < (keys.KvHead + 1) * group; head++)
        {
            PrepareWeights(keys.Layer, head, keys.Length);
            for (int slot = 0; slot < keys.Slots; slot++)
            {
                raw[slot] = WeightedScore(keys.Key(slot));
            }

            ZScore(raw);
            TensorPrimitives.Max(scores[..keys.Slots], raw, scores[..keys.Slots]);
        }
    }

    /// <summary>The predicted logit of query head <paramref name="head"/> for one post-RoPE key, before z-scoring (tests check it against RoPE done directly).</summary>
    internal float RawScore(int layer, int head, ReadOnlySpan<float> key, int length)
    {
        PrepareWeights(layer, head, length);
        return WeightedScore(key);
    }

    /// <summary>W_f = E[q_f]·mean_δ e^{iω_f(t+δ)} and the spread E|q_f| − |E[q_f]| for (layer, head) at length t.</summary>
    private void PrepareWeights(int layer, int head, int length)
    {
        ReadOnlySpan<float> re = _calibration.MeanRe(layer, head), im = _calibration.MeanIm(layer, head);
        ReadOnlySpan<float> modulus = _calibration.MeanModulus(layer, head);
        double[] omega = _inverseFrequencies[layer];
        for (int f = 0; f < omega.Length; f++)
        {
            double sumCos = 0, sumSin = 0;
            for (int i = 0; i < NumOffsets; i++)
            {
                double angle = omega[f] * (length + (double)(1L << i));
                sumCos += Math.Cos(angle);
                sumSin += Math.Sin(angle);
            }

            double cos = sumCos / NumOffsets, sin = sumSin / NumOffsets;
            _weightRe[f] = (float)(re[f] * cos - im[f] * sin);
            _weightIm[f] = (float)(re[f] * sin + im[f] * cos);
            _spread[f] = modulus[f] - MathF.Sqrt(re[f] * re[f] + im[f] * im[f]);
        }
    }

    /// <summary>Σ_f Re(W_f·conj(k_f)) + Σ_f spread_f·|k_f|, with k_f = k[f] + i·k[f + d/2].</summary>
    private float WeightedScore(ReadOnlySpan<float> key)
    {
        int bands = _weightRe.Length;
        ReadOnlySpan<float> real = key[..bands], imaginary = key[bands..];
        for (int f = 0; f < bands; f++)
        {
            _modulus[f] = MathF.Sqrt(real[f] * real[f] + imaginary[f] * imaginary[f]);
        }

        return TensorPrimitives.Dot(_weightRe, real) + TensorPrimitives.Dot(_weightIm, imaginary) + TensorPrimitives.Dot(_spread, _modulus);
    }

    /// <summary>(x − mean) / std over the candidates; all zeros when every score is equal.</summary>
    private static void ZScore(Span<float> values)
    {
        if (values.Length == 0)
        {
            return;
        }

        double mean = 0, squares = 0;
        foreach (float value in values)
        {
            mean += value;
        }

        mean /= values.Length;
        foreach (float value in values)
        {
            squares += (value - mean) * (value - mean);
        }

        double std = Math.Sqrt(squares / values.Length);
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = std > 0 ? (float)((values[i] - mean) / std) : 0f;
        }
    }
}
