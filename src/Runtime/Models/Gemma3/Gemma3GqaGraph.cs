using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;
using LayerOps = Serving.Runtime.Models.Gemma3.Gemma3Graph.LayerOps;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// The Gemma 3 decoder with one <c>com.microsoft.GroupQueryAttention</c> per layer, as ONNX Runtime
/// GenAI's model builder writes it for the CPU (src/python/py/models/builders/base.py and gemma.py,
/// fp32) and as onnx-community's transformers.js downloads use it. docs/models.md lists each fact.
/// </summary>
/// <remarks>
/// <para>Per layer: q, k and v projections (GenAI: one packed MatMul and a Split), per-head q/k
/// RMSNorm as <c>Reshape → SimplifiedLayerNormalization → Reshape</c>, then GroupQueryAttention with
/// <c>do_rotary = 1</c>, which rotates q and k itself from cos/sin tables (<c>[max_position_embeddings,
/// head_dim / 2]</c>, one pair for the global base and one for the local base) at positions it derives
/// from the cache length: position of a new token = its slot. Sliding layers carry
/// <c>local_window_size</c>; every layer keeps every past token.</para>
/// <para><c>seqlens_k</c> (valid tokens per row − 1, int32) and <c>total_sequence_length</c> (the mask's
/// width, int32) come from <c>attention_mask</c> in one subgraph all layers share.</para>
/// <para>Norm weights are stored as 1 + w, as GenAI folds Gemma's offset into them (the weight names stay
/// Hugging Face's); the embedding, its tied head (<c>Gemm</c> with transB) and the MLP are ours.</para>
/// </remarks>
public static class Gemma3GqaGraph
{
    public const string AttentionOp = "GroupQueryAttention";

    /// <summary>GenAI's name for a layer's packed q/k/v weight, <c>[H, (Nh + 2·Nkv)·D]</c>.</summary>
    public static string PackedQkv(int layer) => $"model.layers.{layer}.attn.qkv_proj.MatMul.weight";

    public static string CosCache(bool global) => global ? "cos_cache_global" : "cos_cache_local";

    public static string SinCache(bool global) => global ? "sin_cache_global" : "sin_cache_local";

    public static GraphProto Build(Gemma3Config config, Gemma3ExportStyle style)
    {
        if (style is not (Gemma3ExportStyle.OnnxCommunity or Gemma3ExportStyle.GenAi))
        {
            throw new ArgumentOutOfRangeException(nameof(style), style, "GroupQueryAttention graphs are the onnx-community and genai styles");
        }

        var g = new GraphBuilder("gemma3_text");
        string inputIds = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        string attentionMask = g.Input("attention_mask", DataType.Int64, "batch_size", "total_sequence_length");
        if (style == Gemma3ExportStyle.OnnxCommunity)
        {
            // transformers.js feeds position_ids to every decoder that declares it (1-based for gemma3_text);
            // GroupQueryAttention derives positions from the cache, so nothing reads it.
            g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        }

        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            g.Input(DecoderNames.PastKeyOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, "past_sequence_length", config.HeadDim);
            g.Input(DecoderNames.PastValueOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, "past_sequence_length", config.HeadDim);
        }

        var (seqlensK, totalLength) = Lengths(g, attentionMask);
        // GenAI's builder rounds √H to two decimals (np.round(np.sqrt(hidden_size), 2)): 25.3 for the 270M's 640.
        float scale = style == Gemma3ExportStyle.GenAi ? MathF.Round(MathF.Sqrt(config.HiddenSize), 2) : MathF.Sqrt(config.HiddenSize);
        string hidden = Gemma3Graph.Embed(g, config, inputIds, scale);
        var ops = new LayerOps(FoldedNorms: true, FastGelu: style == Gemma3ExportStyle.GenAi);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            using (g.PushScope($"model/layers.{layer}"))
            {
                hidden = Gemma3Graph.DecoderLayer(g, config, layer, hidden, ops,
                    normed => Attention(g, config, style, layer, normed, seqlensK, totalLength));
            }
        }

        using (g.PushScope("model/norm"))
        {
            hidden = ops.Norm(g, hidden, Gemma3Weights.FinalNorm, config.RmsNormEps);
        }

        Gemma3Graph.DeclareLogits(g, config, hidden);
        return g.Graph;
    }

    /// <summary>
    /// The weights of <paramref name="specs"/> in this style's layout: norms as 1 + w; for GenAI, each
    /// layer's q, k and v projections concatenated along the output into <see cref="PackedQkv"/>; then the
    /// four rotary tables.
    /// </summary>
    public static IEnumerable<GeneratedWeight> Weights(Gemma3Config config, Gemma3ExportStyle style, IReadOnlyList<WeightSpec> specs, Func<WeightSpec, float[]> weights)
    {
        var byName = specs.ToDictionary(spec => spec.Name, StringComparer.Ordinal);
        foreach (WeightSpec spec in specs)
        {
            string? projection = style == Gemma3ExportStyle.GenAi ? QueryKeyValueProjection(spec.Name) : null;
            if (projection == "q")
            {
                int layer = LayerOf(spec.Name);
                WeightSpec[] parts = [.. new[] { "q", "k", "v" }.Select(p => byName[Gemma3Weights.Layer(layer, $"self_attn.{p}_proj.weight")])];
                long columns = parts.Sum(p => (long)p.Shape[1]);
                yield return new GeneratedWeight(PackedQkv(layer), [config.HiddenSize, columns], () => ConcatColumns(parts, weights, config.HiddenSize));
            }
            else if (projection is null)
            {
                long[] dims = [.. spec.Shape.Select(d => (long)d)];
                yield return spec.Init == WeightInit.Norm
                    ? new GeneratedWeight(spec.Name, dims, () => PlusOne(weights(spec)))
                    : new GeneratedWeight(spec.Name, dims, () => weights(spec));
            }
        }

        foreach (bool global in new[] { true, false })
        {
            double theta = global ? config.RopeTheta : config.RopeLocalBaseFreq;
            long[] dims = [config.MaxPositionEmbeddings, config.HeadDim / 2];
            yield return new GeneratedWeight(CosCache(global), dims, () => RotaryTable(config, theta, Math.Cos));
            yield return new GeneratedWeight(SinCache(global), dims, () => RotaryTable(config, theta, Math.Sin));
        }
    }

    /// <summary>"q", "k" or "v" for a layer's attention projection weight (packed together by GenAI), else null.</summary>
    private static string? QueryKeyValueProjection(string name) =>
        new[] { "q", "k", "v" }.FirstOrDefault(p => name.EndsWith($".self_attn.{p}_proj.weight", StringComparison.Ordinal));

    private static int LayerOf(string name) => int.Parse(name.Split('.')[2], System.Globalization.CultureInfo.InvariantCulture);

    private static float[] PlusOne(float[] values)
    {
        for (int i = 0; i < values.Length; i++)
        {
            values[i] += 1f;
        }

        return values;
    }

    private static float[] ConcatColumns(WeightSpec[] parts, Func<WeightSpec, float[]> weights, int rows)
    {
        int total = parts.Sum(p => p.Shape[1]);
        var packed = new float[(long)rows * total];
        int offset = 0;
        foreach (WeightSpec part in parts)
        {
            float[] w = weights(part);
            int columns = part.Shape[1];
            for (int r = 0; r < rows; r++)
            {
                Array.Copy(w, (long)r * columns, packed, (long)r * total + offset, columns);
            }

            offset += columns;
        }

        return packed;
    }

    /// <summary>f(p · θ^(−2i/D)) for positions p and frequencies i &lt; D/2, as GenAI's make_rotary_embedding_caches_from_scratch (in float32 there).</summary>
    private static float[] RotaryTable(Gemma3Config config, double theta, Func<double, double> f)
    {
        int half = config.HeadDim / 2;
        var inverse = new float[half];
        for (int i = 0; i < half; i++)
        {
            inverse[i] = (float)(1.0 / Math.Pow(theta, 2.0 * i / config.HeadDim));
        }

        var table = new float[(long)config.MaxPositionEmbeddings * half];
        for (int p = 0; p < config.MaxPositionEmbeddings; p++)
        {
            for (int i = 0; i < half; i++)
            {
                table[(long)p * half + i] = (float)f((float)p * inverse[i]);
            }
        }

        return table;
    }

    /// <summary>GenAI's attn_mask_reformat subgraph: seqlens_k = ReduceSum(mask, 1) − 1 and total_sequence_length = Shape(mask)[1], both int32.</summary>
    private static (string SeqlensK, string TotalLength) Lengths(GraphBuilder g, string attentionMask)
    {
        using var scope = g.PushScope("model/attn_mask_reformat/attn_mask_subgraph");
        string sum = g.Op("ReduceSum", [attentionMask, g.Int64s(1)], Attr("keepdims", 0L));
        string seqlensK = g.Op("Cast", [g.Op("Sub", [sum, g.Int64s(1)])], Attr("to", (long)DataType.Int32));
        string width = g.Op("Gather", [g.Op("Shape", [attentionMask]), g.Int64Scalar(1)], Attr("axis", 0L));
        return (seqlensK, g.Op("Cast", [width], Attr("to", (long)DataType.Int32)));
    }

    private static string Attention(GraphBuilder g, Gemma3Config config, Gemma3ExportStyle style, int layer, string x, string seqlensK, string totalLength)
    {
        int q = config.NumAttentionHeads * config.HeadDim, kv = config.NumKeyValueHeads * config.HeadDim;
        string query, key, value;
        if (style == Gemma3ExportStyle.GenAi)
        {
            string packed = Gemma3Graph.Linear(g, "qkv_proj", x, PackedQkv(layer));
            string[] parts;
            using (g.PushScope("qkv_proj"))
            {
                parts = g.OpN("Split", [packed, g.Int64s(q, kv, kv)], 3, Attr("axis", -1L));
            }

            (query, key, value) = (parts[0], parts[1], parts[2]);
        }
        else
        {
            query = Gemma3Graph.Linear(g, "q_proj", x, Gemma3Weights.Layer(layer, "self_attn.q_proj.weight"));
            key = Gemma3Graph.Linear(g, "k_proj", x, Gemma3Weights.Layer(layer, "self_attn.k_proj.weight"));
            value = Gemma3Graph.Linear(g, "v_proj", x, Gemma3Weights.Layer(layer, "self_attn.v_proj.weight"));
        }

        query = HeadNorm(g, config, layer, "q", query, q);
        key = HeadNorm(g, config, layer, "k", key, kv);
        bool global = config.LayerKind(layer) == AttentionKind.Full;
        string[] outputs = g.OpN(DecoderFusions.MicrosoftDomain, AttentionOp,
            [query, key, value, DecoderNames.PastKeyOf(layer), DecoderNames.PastValueOf(layer), seqlensK, totalLength, CosCache(global), SinCache(global)], 3,
            Attr("num_heads", (long)config.NumAttentionHeads),
            Attr("kv_num_heads", (long)config.NumKeyValueHeads),
            Attr("scale", (float)(1.0 / Math.Sqrt(config.QueryPreAttnScalar))),
            Attr("local_window_size", global ? -1L : config.SlidingWindow),
            Attr("do_rotary", 1L),
            Attr("rotary_interleaved", 0L),
            Attr("softcap", 0f));
        g.Output(outputs[1], DecoderNames.PresentKeyOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, "total_sequence_length", config.HeadDim);
        g.Output(outputs[2], DecoderNames.PresentValueOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, "total_sequence_length", config.HeadDim);
        return Gemma3Graph.Linear(g, "o_proj", outputs[0], Gemma3Weights.Layer(layer, "self_attn.o_proj.weight"));
    }

    /// <summary>GenAI's make_qk_norm: <c>[B, S, N·D] → [B, S·N, D] → SimplifiedLayerNormalization → [B, S, N·D]</c>.</summary>
    private static string HeadNorm(GraphBuilder g, Gemma3Config config, int layer, string which, string x, int width)
    {
        using var scope = g.PushScope($"{which}_norm");
        string heads = g.Op("Reshape", [x, g.Int64s(0, -1, config.HeadDim)]);
        var ops = new LayerOps(FoldedNorms: true, FastGelu: false);
        string normed = ops.Norm(g, heads, Gemma3Weights.Layer(layer, $"self_attn.{which}_norm.weight"), config.RmsNormEps);
        return g.Op("Reshape", [normed, g.Int64s(0, -1, width)]);
    }
}
