using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using Names = Serving.Runtime.Models.DecoderNames;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// Writes the Gemma 3 decoder as an ONNX graph of standard opset-17 operators, with the
/// inputs and outputs of Hugging Face / Optimum decoder exports.
/// </summary>
/// <remarks>
/// <para>Masks never read slot indices as positions, so caches can be compacted. Global
/// layers: a key slot is visible if <c>attention_mask</c> marks it and it is not a later new
/// token (all past slots precede the new tokens, whatever positions they held). RoPE reads
/// <c>position_ids</c> only, so a constant shift (transformers.js feeds 1-based ones) changes nothing.</para>
/// <para>Sliding layers keep their own past length (<c>sliding_past_sequence_length</c>, the
/// same for every sliding layer) and return at most <c>sliding_window − 1</c> slots as present.
/// Their slots are the right-aligned tail of <c>attention_mask</c>, and the distance from a
/// query to a key is the count of valid slots between them (a reverse cumulative sum of the
/// tail), which equals the position difference. Two rules follow for callers:</para>
/// <list type="bullet">
/// <item>Feeding present back as past is exact when, after the first call, every row adds the
/// same number of new tokens per call (decode steps; transformers.js). A caller that mixes
/// rows with different counts in one call leaves padding inside the short rows' sliding
/// caches, and the trim can push real keys out: it must rebuild each row's cache from that
/// row's valid slots (its last min(new tokens, window − 1) slots hold them).</item>
/// <item><c>attention_mask</c> marks tokens for every layer. A global slot may be masked or
/// dropped (KV eviction) only outside the last <c>window − 1</c> tokens, which the sliding
/// layers share; the global past must stay at least as long as the sliding one.
/// <see cref="Generation.ModelRunner"/> checks the lengths.</item>
/// </list>
/// <para>Masked scores become the lowest float (not −∞), so fully padded rows give a uniform
/// softmax instead of NaN that would reach later layers' keys.</para>
/// </remarks>
public static class Gemma3Graph
{
    public const int Opset = 17;
    public const long IrVersion = 8;

    private const long EndOfAxis = long.MaxValue;

    /// <summary>The graph, without weight initializers (the caller adds those, by name).</summary>
    public static GraphProto Build(Gemma3Config config)
    {
        var g = new GraphBuilder("gemma3_text");
        var io = DeclareInputs(g, config);
        var masks = BuildMasks(g, config, io);
        var rope = RopeTables(g, config, io.PositionIds);
        string hidden = Embed(g, config, io.InputIds, MathF.Sqrt(config.HiddenSize));
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            string mask = config.LayerKind(layer) == AttentionKind.Sliding ? masks.Sliding! : masks.Global;
            var (cos, sin) = rope[config.RopeBase(layer)];
            using (g.PushScope($"model/layers.{layer}"))
            {
                hidden = DecoderLayer(g, config, layer, hidden, LayerOps.Standard,
                    normed => Gemma3Attention.Build(g, config, layer, normed, mask, cos, sin));
            }
        }

        hidden = LastPositions(g, hidden, io.NumLogitsToKeep);
        using (g.PushScope("model/norm"))
        {
            hidden = RmsNorm(g, hidden, Gemma3Weights.FinalNorm, config.RmsNormEps);
        }

        DeclareLogits(g, config, hidden);
        return g.Graph;
    }

    /// <summary>How a style writes the layer's arithmetic around attention.</summary>
    /// <param name="FoldedNorms">
    /// <c>SimplifiedLayerNormalization(x, γ)</c> with γ = 1 + w stored in the weight, as ONNX Runtime GenAI's builder writes
    /// Gemma's norms; otherwise the RMSNorm written out over w (<see cref="RmsNorm"/>).
    /// </param>
    /// <param name="FastGelu">The MLP's tanh GELU as <c>com.microsoft.FastGelu</c> (GenAI), otherwise written out.</param>
    internal sealed record LayerOps(bool FoldedNorms, bool FastGelu)
    {
        public static LayerOps Standard { get; } = new(false, false);

        public string Norm(GraphBuilder g, string x, string weight, double eps) => FoldedNorms
            ? g.Op("SimplifiedLayerNormalization", [x, weight], Attr("axis", -1L), Attr("epsilon", (float)eps), Attr("stash_type", 1L))
            : RmsNorm(g, x, weight, eps);
    }

    /// <summary>The token embeddings times <paramref name="scale"/> (√H; GenAI's builder rounds it to two decimals).</summary>
    internal static string Embed(GraphBuilder g, Gemma3Config config, string inputIds, float scale)
    {
        using var scope = g.PushScope("model/embed_tokens");
        string embedded = g.Op("Gather", [Gemma3Weights.Embedding, inputIds], Attr("axis", 0L));
        return g.Op("Mul", [embedded, g.FloatScalar(scale)]);
    }

    private sealed record Inputs(string InputIds, string AttentionMask, string PositionIds, string NumLogitsToKeep);

    private sealed record Masks(string Global, string? Sliding);

    private static Inputs DeclareInputs(GraphBuilder g, Gemma3Config config)
    {
        var io = new Inputs(
            g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length"),
            g.Input("attention_mask", DataType.Int64, "batch_size", "total_sequence_length"),
            g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length"),
            g.InputOfAnyRank("num_logits_to_keep", DataType.Int64));
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            string past = PastDim(config, layer);
            g.Input(Names.PastKeyOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, past, config.HeadDim);
            g.Input(Names.PastValueOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, past, config.HeadDim);
        }

        return io;
    }

    private static string PastDim(Gemma3Config config, int layer) =>
        config.LayerKind(layer) == AttentionKind.Sliding ? "sliding_past_sequence_length" : "past_sequence_length";

    private static Masks BuildMasks(GraphBuilder g, Gemma3Config config, Inputs io)
    {
        using var scope = g.PushScope("model/attention_mask");
        string newLength = g.Op("Shape", [io.InputIds], Attr("start", 1L), Attr("end", 2L));
        string valid = g.Op("Cast", [io.AttentionMask], Attr("to", (long)DataType.Bool));
        string globalTotal = g.Op("Shape", [io.AttentionMask], Attr("start", 1L), Attr("end", 2L));
        string global = CausalMask(g, valid, newLength, globalTotal);

        int firstSliding = Enumerable.Range(0, config.NumHiddenLayers).FirstOrDefault(
            layer => config.LayerKind(layer) == AttentionKind.Sliding, -1);
        return new Masks(global, firstSliding < 0 ? null : SlidingMask(g, config, io, firstSliding, newLength));
    }

    /// <summary>
    /// [B,1,1,S,T] bool: slot k is visible to new token s if <paramref name="valid"/> marks it
    /// and k ≤ P + s (past slots always; new tokens causally).
    /// </summary>
    private static string CausalMask(GraphBuilder g, string valid, string newLength, string total)
    {
        var (keySlots, querySlots) = Slots(g, newLength, total);
        string causal = g.Op("LessOrEqual", [keySlots, querySlots]);
        string mask = g.Op("And", [causal, g.Op("Unsqueeze", [valid, g.Int64s(1)])]);
        return g.Op("Unsqueeze", [mask, g.Int64s(1, 2)]);
    }

    /// <summary>Key slots <c>[1, T]</c> = 0…T−1 and query slots <c>[S, 1]</c> = P…T−1 (P = T − S), int64.</summary>
    internal static (string Keys, string Queries) Slots(GraphBuilder g, string newLength, string total)
    {
        string pastLength = g.Op("Sub", [total, newLength]);
        string keySlots = g.Op("Range", [g.Int64Scalar(0), Scalar(g, total), g.Int64Scalar(1)]);
        string querySlots = g.Op("Range", [Scalar(g, pastLength), Scalar(g, total), g.Int64Scalar(1)]);
        return (g.Op("Unsqueeze", [keySlots, g.Int64s(0)]), g.Op("Unsqueeze", [querySlots, g.Int64s(1)]));
    }

    private static string SlidingMask(GraphBuilder g, Gemma3Config config, Inputs io, int layer, string newLength)
    {
        using var scope = g.PushScope("sliding");
        string pastLength = g.Op("Shape", [Names.PastKeyOf(layer)], Attr("start", 2L), Attr("end", 3L));
        string total = g.Op("Add", [pastLength, newLength]);
        string tail = g.Op("Slice", [io.AttentionMask, g.Op("Neg", [total]), g.Int64s(EndOfAxis), g.Int64s(1)]);
        string validAfter = g.Op("CumSum", [tail, g.Int64Scalar(1)], Attr("reverse", 1L));
        string queryValidAfter = g.Op("Slice", [validAfter, pastLength, g.Int64s(EndOfAxis), g.Int64s(1)]);
        string distance = g.Op("Sub", [
            g.Op("Unsqueeze", [validAfter, g.Int64s(1)]),
            g.Op("Unsqueeze", [queryValidAfter, g.Int64s(2)])]);
        string inWindow = g.Op("Less", [distance, g.Int64Scalar(config.SlidingWindow)]);
        string valid = g.Op("Cast", [tail], Attr("to", (long)DataType.Bool));
        string causal = CausalMask(g, valid, newLength, total);
        return g.Op("And", [causal, g.Op("Unsqueeze", [inWindow, g.Int64s(1, 2)])]);
    }

    private static string Scalar(GraphBuilder g, string oneElement) => g.Op("Squeeze", [oneElement, g.Int64s(0)]);

    /// <summary>The cos and sin tables of each RoPE base the layers use (global rope_theta, local rope_local_base_freq).</summary>
    internal static Dictionary<double, (string Cos, string Sin)> RopeTables(GraphBuilder g, Gemma3Config config, string positionIds)
    {
        var rope = new Dictionary<double, (string Cos, string Sin)>();
        foreach (double theta in Enumerable.Range(0, config.NumHiddenLayers).Select(config.RopeBase).Distinct())
        {
            rope[theta] = BuildRope(g, config, positionIds, theta);
        }

        return rope;
    }

    /// <summary>cos and sin tables [B,1,S,D] for one RoPE base (rotate-half layout).</summary>
    private static (string Cos, string Sin) BuildRope(GraphBuilder g, Gemma3Config config, string positionIds, double theta)
    {
        using var scope = g.PushScope($"model/rotary_emb_{theta:0}");
        int half = config.HeadDim / 2;
        var inverseFrequencies = new float[half];
        for (int f = 0; f < half; f++)
        {
            inverseFrequencies[f] = (float)(1.0 / Math.Pow(theta, 2.0 * f / config.HeadDim));
        }

        string positions = g.Op("Unsqueeze", [g.Op("Cast", [positionIds], Attr("to", (long)DataType.Float)), g.Int64s(2)]);
        string angles = g.Op("Mul", [positions, g.Floats(inverseFrequencies)]);
        string both = g.Op("Concat", [angles, angles], Attr("axis", -1L));
        return (g.Op("Unsqueeze", [g.Op("Cos", [both]), g.Int64s(1)]),
                g.Op("Unsqueeze", [g.Op("Sin", [both]), g.Int64s(1)]));
    }

    /// <summary>One decoder layer; <paramref name="attention"/> writes the self-attention of the normed input (in scope self_attn).</summary>
    internal static string DecoderLayer(GraphBuilder g, Gemma3Config config, int layer, string hidden, LayerOps ops, Func<string, string> attention)
    {
        string normed, attended, mlp;
        using (g.PushScope("input_layernorm"))
        {
            normed = ops.Norm(g, hidden, Gemma3Weights.Layer(layer, "input_layernorm.weight"), config.RmsNormEps);
        }

        using (g.PushScope("self_attn"))
        {
            attended = attention(normed);
        }

        using (g.PushScope("post_attention_layernorm"))
        {
            attended = ops.Norm(g, attended, Gemma3Weights.Layer(layer, "post_attention_layernorm.weight"), config.RmsNormEps);
        }

        hidden = g.Op("Add", [hidden, attended]);
        using (g.PushScope("pre_feedforward_layernorm"))
        {
            normed = ops.Norm(g, hidden, Gemma3Weights.Layer(layer, "pre_feedforward_layernorm.weight"), config.RmsNormEps);
        }

        using (g.PushScope("mlp"))
        {
            mlp = GeGlu(g, layer, normed, ops.FastGelu);
        }

        using (g.PushScope("post_feedforward_layernorm"))
        {
            mlp = ops.Norm(g, mlp, Gemma3Weights.Layer(layer, "post_feedforward_layernorm.weight"), config.RmsNormEps);
        }

        return g.Op("Add", [hidden, mlp]);
    }

    /// <summary>x / sqrt(mean(x²) + eps) · (1 + w) over the last axis.</summary>
    internal static string RmsNorm(GraphBuilder g, string x, string weight, double eps)
    {
        string meanSquare = g.Op("ReduceMean", [g.Op("Mul", [x, x])], Attr("axes", [-1L]), Attr("keepdims", 1L));
        string rms = g.Op("Sqrt", [g.Op("Add", [meanSquare, g.FloatScalar((float)eps)])]);
        string scale = g.Op("Add", [g.FloatScalar(1f), weight]);
        return g.Op("Mul", [g.Op("Div", [x, rms]), scale]);
    }

    internal static string Linear(GraphBuilder g, string scope, string x, string weight)
    {
        using var s = g.PushScope(scope);
        return g.Op("MatMul", [x, weight]);
    }

    /// <summary>down(gelu_tanh(gate(x)) · up(x)), the tanh GELU written out (Gelu is opset 20) or as ONNX Runtime's FastGelu.</summary>
    private static string GeGlu(GraphBuilder g, int layer, string x, bool fastGelu)
    {
        string gate = Linear(g, "gate_proj", x, Gemma3Weights.Layer(layer, "mlp.gate_proj.weight"));
        string up = Linear(g, "up_proj", x, Gemma3Weights.Layer(layer, "mlp.up_proj.weight"));
        string activated;
        using (g.PushScope("act_fn"))
        {
            activated = fastGelu ? g.OpIn(DecoderFusions.MicrosoftDomain, "FastGelu", [gate]) : TanhGelu(g, gate);
        }

        return Linear(g, "down_proj", g.Op("Mul", [activated, up]), Gemma3Weights.Layer(layer, "mlp.down_proj.weight"));
    }

    /// <summary>0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³))).</summary>
    private static string TanhGelu(GraphBuilder g, string x)
    {
        string cube = g.Op("Mul", [g.Op("Mul", [x, x]), x]);
        string inner = g.Op("Add", [x, g.Op("Mul", [cube, g.FloatScalar(0.044715f)])]);
        string tanh = g.Op("Tanh", [g.Op("Mul", [inner, g.FloatScalar(MathF.Sqrt(2f / MathF.PI))])]);
        string half = g.Op("Mul", [x, g.FloatScalar(0.5f)]);
        return g.Op("Mul", [half, g.Op("Add", [tanh, g.FloatScalar(1f)])]);
    }

    /// <summary>
    /// The last <c>num_logits_to_keep</c> positions (0 keeps all, as in Hugging Face): a
    /// 512-token prefill of a 262k vocabulary otherwise makes 537 MB of logits to use one row.
    /// The input has no declared rank and is reshaped to [1]: transformers.js 4.3 feeds a
    /// scalar, ONNX Runtime GenAI 0.20 a [1] tensor, and a declared rank would refuse one of them.
    /// </summary>
    private static string LastPositions(GraphBuilder g, string hidden, string count)
    {
        using var scope = g.PushScope("model/logits_to_keep");
        string start = g.Op("Reshape", [g.Op("Neg", [count]), g.Int64s(1)]);
        return g.Op("Slice", [hidden, start, g.Int64s(EndOfAxis), g.Int64s(1)]);
    }

    /// <summary>
    /// Tied LM head as Gemm(h, E, transB = 1): reads the [V, H] embedding as it is, where a
    /// MatMul would need a transposed copy (671 MB more for the 270M model's 262k vocabulary).
    /// </summary>
    internal static void DeclareLogits(GraphBuilder g, Gemma3Config config, string hidden)
    {
        using var scope = g.PushScope("lm_head");
        string flat = g.Op("Reshape", [hidden, g.Int64s(-1, config.HiddenSize)]);
        string logits = g.Op("Gemm", [flat, Gemma3Weights.Embedding], Attr("transB", 1L));
        string positions = g.Op("Shape", [hidden], Attr("end", 2L));
        string shape = g.Op("Concat", [positions, g.Int64s(config.VocabSize)], Attr("axis", 0L));
        g.Output(g.Op("Reshape", [logits, shape]), "logits", DataType.Float, "batch_size", "logits_sequence_length", config.VocabSize);
    }
}
