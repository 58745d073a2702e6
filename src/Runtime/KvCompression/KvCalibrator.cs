using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// Measures TriAttention's query statistics (<see cref="KvCalibration"/>): each layer's queries
/// after q_norm and before RoPE become extra outputs of a copy of the graph, which runs the
/// calibration text in chunks, each from position 0.
/// </summary>
public static class KvCalibrator
{
    /// <summary>Tokens per run: long enough for attention to mix context, short enough that the taps stay small.</summary>
    public const int ChunkTokens = 256;

    /// <summary>
    /// The pre-RoPE query value of each layer: our builder's name for it, or else the one value
    /// that leaves the layer's <c>self_attn/q_norm</c> scope (the node naming of Hugging Face
    /// exports). Throws <see cref="InvalidDataException"/> naming the first layer without one.
    /// </summary>
    public static string[] FindQueryTaps(GraphProto graph, int layers)
    {
        var produced = new HashSet<string>(graph.Node.SelectMany(node => node.Output));
        var taps = new string[layers];
        for (int layer = 0; layer < layers; layer++)
        {
            string ours = Gemma3Attention.QueryPreRopeName(layer);
            taps[layer] = produced.Contains(ours) ? ours : ScopeOutput(graph, $"/model/layers.{layer}/self_attn/q_norm/")
                ?? throw new InvalidDataException(
                    $"layer {layer}: no query after q_norm was found (looked for the value '{ours}' and for nodes named '/model/layers.{layer}/self_attn/q_norm/…'); "
                    + "KV calibration needs a Gemma 3 graph that keeps QK-norm as separate nodes");
        }

        return taps;
    }

    /// <summary>The single value produced inside <paramref name="scope"/> and read outside it, or null.</summary>
    private static string? ScopeOutput(GraphProto graph, string scope)
    {
        var inside = graph.Node.Where(node => node.Name.StartsWith(scope, StringComparison.Ordinal)).ToList();
        var insideOutputs = new HashSet<string>(inside.SelectMany(node => node.Output));
        var leaving = graph.Node
            .Where(node => !node.Name.StartsWith(scope, StringComparison.Ordinal))
            .SelectMany(node => node.Input)
            .Where(insideOutputs.Contains)
            .Distinct()
            .ToList();
        return leaving.Count == 1 ? leaving[0] : null;
    }

    /// <summary>Runs <paramref name="tokens"/> through the model at <paramref name="onnxPath"/> and returns the statistics.</summary>
    public static KvCalibration Calibrate(string onnxPath, Gemma3Config config, IReadOnlyList<int> tokens, IProgress<(long Done, long Total)>? progress = null, int threads = 0)
    {
        if (tokens.Count == 0)
        {
            throw new ArgumentException("the calibration text has no tokens", nameof(tokens));
        }

        ModelProto model = OnnxModelFile.Load(onnxPath);
        string[] taps = FindQueryTaps(model.Graph, config.NumHiddenLayers);
        var layerOf = taps.Select((tap, layer) => (tap, layer)).ToDictionary(pair => pair.tap, pair => pair.layer);
        var sums = new QuerySums(config);
        using var decoder = new TappedDecoder(onnxPath, model, taps, threads);
        int chunk = Math.Min(ChunkTokens, config.MaxPositionEmbeddings);
        for (int start = 0; start < tokens.Count;)
        {
            int count = Math.Min(chunk, tokens.Count - start);
            if (count == config.NumAttentionHeads && count > 1)
            {
                count--;  // S ≠ heads, so the layout ([B,S,H,D] or [B,H,S,D]) is never ambiguous
            }

            long[] ids = tokens.Skip(start).Take(count).Select(id => (long)id).ToArray();
            decoder.Run(ids, (tap, value) => sums.Add(layerOf[tap], value, count, tap));
            start += count;
            progress?.Report((start, tokens.Count));
        }

        return sums.ToCalibration();
    }

    /// <summary>Running sums of z_f, its real and imaginary parts and its modulus per (layer, head, band).</summary>
    private sealed class QuerySums(Gemma3Config config)
    {
        private readonly int _heads = config.NumAttentionHeads, _dim = config.HeadDim;
        private readonly double[] _re = new double[config.NumHiddenLayers * config.NumAttentionHeads * config.HeadDim / 2];
        private readonly double[] _im = new double[config.NumHiddenLayers * config.NumAttentionHeads * config.HeadDim / 2];
        private readonly double[] _modulus = new double[config.NumHiddenLayers * config.NumAttentionHeads * config.HeadDim / 2];
        private readonly long[] _tokens = new long[config.NumHiddenLayers];

        public void Add(int layer, OrtValue value, int length, string tap)
        {
            long[] shape = value.GetTensorTypeAndShape().Shape;
            bool tokensFirst = shape.Length == 4 && shape[1] == length && shape[2] == _heads && shape[3] == _dim;
            bool headsFirst = shape.Length == 4 && shape[1] == _heads && shape[2] == length && shape[3] == _dim;
            if (!tokensFirst && !headsFirst)
            {
                throw new InvalidDataException($"the query '{tap}' has shape [{string.Join(", ", shape)}]; expected [1, {length}, {_heads}, {_dim}] or [1, {_heads}, {length}, {_dim}]");
            }

            ReadOnlySpan<float> data = value.GetTensorDataAsSpan<float>();
            int bands = _dim / 2;
            for (int head = 0; head < _heads; head++)
            {
                int offset = (layer * _heads + head) * bands;
                for (int t = 0; t < length; t++)
                {
                    ReadOnlySpan<float> q = data.Slice((tokensFirst ? t * _heads + head : head * length + t) * _dim, _dim);
                    for (int f = 0; f < bands; f++)
                    {
                        double re = q[f], im = q[f + bands];
                        _re[offset + f] += re;
                        _im[offset + f] += im;
                        _modulus[offset + f] += Math.Sqrt(re * re + im * im);
                    }
                }
            }

            _tokens[layer] += length;
        }

        public KvCalibration ToCalibration()
        {
            int bands = _dim / 2;
            float[] Mean(double[] sums) => sums.Select((sum, i) => (float)(sum / _tokens[i / (_heads * bands)])).ToArray();
            return new KvCalibration(_tokens.Length, _heads, _dim, _tokens[0], Mean(_re), Mean(_im), Mean(_modulus));
        }
    }
}
