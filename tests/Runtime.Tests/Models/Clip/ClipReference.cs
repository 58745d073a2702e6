using Serving.Runtime.Models.Clip;

namespace Serving.Runtime.Tests.Models.Clip;

/// <summary>
/// CLIP's forward pass written out loop by loop in doubles, independent of the ONNX graph:
/// the graph is right when ONNX Runtime agrees with this (projected, not normalised).
/// </summary>
public sealed class ClipReference(ClipConfig config, Func<ClipWeight, float[]> weights)
{
    private readonly Dictionary<string, float[]> _w = ClipWeights.Specs(config).ToDictionary(spec => spec.Name, weights);

    public double[] Text(int[] ids)
    {
        int h = config.Text.HiddenSize, s = ids.Length;
        var x = new double[s][];
        for (int t = 0; t < s; t++)
        {
            x[t] = new double[h];
            for (int i = 0; i < h; i++)
            {
                x[t][i] = _w[ClipWeights.TokenEmbedding][ids[t] * h + i] + _w[ClipWeights.TextPositions][t * h + i];
            }
        }

        Encoder(x, ClipTower.Text, config.Text, causal: true);
        int eos = Array.IndexOf(ids, config.EosTokenId);
        double[] pooled = LayerNorm(x[Math.Max(eos, 0)], ClipWeights.TextFinalNorm, config.Text.LayerNormEps);
        return MatVec(pooled, ClipWeights.TextProjection, config.ProjectionDim);
    }

    /// <summary><paramref name="pixels"/>: one image, [3, size, size].</summary>
    public double[] Vision(float[] pixels)
    {
        int h = config.Vision.HiddenSize, p = config.PatchSize, grid = config.ImageSize / p, size = config.ImageSize;
        float[] conv = _w[ClipWeights.PatchEmbedding], pos = _w[ClipWeights.VisionPositions];
        var x = new double[config.NumPatches + 1][];
        x[0] = _w[ClipWeights.ClassEmbedding].Select(v => (double)v).ToArray();
        for (int patch = 0; patch < config.NumPatches; patch++)
        {
            int py = patch / grid, px = patch % grid;
            x[patch + 1] = new double[h];
            for (int o = 0; o < h; o++)
            {
                double sum = 0;
                for (int c = 0; c < 3; c++)
                {
                    for (int ky = 0; ky < p; ky++)
                    {
                        for (int kx = 0; kx < p; kx++)
                        {
                            sum += conv[((o * 3 + c) * p + ky) * p + kx] * pixels[(c * size + py * p + ky) * size + px * p + kx];
                        }
                    }
                }

                x[patch + 1][o] = sum;
            }
        }

        for (int t = 0; t < x.Length; t++)
        {
            for (int i = 0; i < h; i++)
            {
                x[t][i] += pos[t * h + i];
            }

            x[t] = LayerNorm(x[t], ClipWeights.VisionPreNorm, config.Vision.LayerNormEps);
        }

        Encoder(x, ClipTower.Vision, config.Vision, causal: false);
        return MatVec(LayerNorm(x[0], ClipWeights.VisionPostNorm, config.Vision.LayerNormEps), ClipWeights.VisualProjection, config.ProjectionDim);
    }

    private void Encoder(double[][] x, ClipTower tower, ClipTowerConfig tc, bool causal)
    {
        for (int layer = 0; layer < tc.NumHiddenLayers; layer++)
        {
            string W(string name) => ClipWeights.Layer(tower, layer, name);
            double[][] normed = x.Select(row => LayerNorm(row, W("layer_norm1"), tc.LayerNormEps)).ToArray();
            double[][] attended = Attention(normed, W, tc, causal);
            for (int t = 0; t < x.Length; t++)
            {
                double[] output = Linear(attended[t], W("self_attn.out_proj"), tc.HiddenSize);
                for (int i = 0; i < tc.HiddenSize; i++)
                {
                    x[t][i] += output[i];
                }

                double[] up = Linear(LayerNorm(x[t], W("layer_norm2"), tc.LayerNormEps), W("mlp.fc1"), tc.IntermediateSize);
                double[] down = Linear(up.Select(v => v / (1 + Math.Exp(-1.702 * v))).ToArray(), W("mlp.fc2"), tc.HiddenSize);
                for (int i = 0; i < tc.HiddenSize; i++)
                {
                    x[t][i] += down[i];
                }
            }
        }
    }

    private double[][] Attention(double[][] x, Func<string, string> w, ClipTowerConfig tc, bool causal)
    {
        int s = x.Length, d = tc.HeadDim;
        double[][] q = x.Select(r => Linear(r, w("self_attn.q_proj"), tc.HiddenSize)).ToArray();
        double[][] k = x.Select(r => Linear(r, w("self_attn.k_proj"), tc.HiddenSize)).ToArray();
        double[][] v = x.Select(r => Linear(r, w("self_attn.v_proj"), tc.HiddenSize)).ToArray();
        var result = x.Select(_ => new double[tc.HiddenSize]).ToArray();
        for (int head = 0; head < tc.NumAttentionHeads; head++)
        {
            for (int i = 0; i < s; i++)
            {
                int visible = causal ? i + 1 : s;
                var scores = new double[visible];
                for (int j = 0; j < visible; j++)
                {
                    for (int e = 0; e < d; e++)
                    {
                        scores[j] += q[i][head * d + e] * k[j][head * d + e] / Math.Sqrt(d);
                    }
                }

                double max = scores.Max(), total = scores.Sum(score => Math.Exp(score - max));
                for (int j = 0; j < visible; j++)
                {
                    for (int e = 0; e < d; e++)
                    {
                        result[i][head * d + e] += Math.Exp(scores[j] - max) / total * v[j][head * d + e];
                    }
                }
            }
        }

        return result;
    }

    private double[] Linear(double[] x, string prefix, int outputs)
    {
        double[] y = MatVec(x, prefix + ".weight", outputs);
        float[] bias = _w[prefix + ".bias"];
        for (int o = 0; o < outputs; o++)
        {
            y[o] += bias[o];
        }

        return y;
    }

    private double[] MatVec(double[] x, string name, int outputs)
    {
        float[] w = _w[name];
        var y = new double[outputs];
        for (int i = 0; i < x.Length; i++)
        {
            for (int o = 0; o < outputs; o++)
            {
                y[o] += x[i] * w[i * outputs + o];
            }
        }

        return y;
    }

    private double[] LayerNorm(double[] x, string prefix, float eps)
    {
        double mean = x.Average(), variance = x.Sum(v => (v - mean) * (v - mean)) / x.Length;
        float[] gain = _w[prefix + ".weight"], bias = _w[prefix + ".bias"];
        return x.Select((v, i) => (v - mean) / Math.Sqrt(variance + eps) * gain[i] + bias[i]).ToArray();
    }
}
