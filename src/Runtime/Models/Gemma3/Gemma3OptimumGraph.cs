using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using Names = Serving.Runtime.Models.DecoderNames;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models.Gemma3;

/// <summary>
/// The Gemma 3 decoder as Hugging Face Optimum exports <c>Gemma3ForCausalLM</c>
/// (<c>optimum-cli export onnx --task text-generation-with-past</c>): standard operators in the
/// order PyTorch's tracer records transformers' eager attention. docs/models.md ("Optimum style")
/// lists each fact and its source.
/// </summary>
/// <remarks>
/// <para>Differences from ours (<see cref="Gemma3Graph"/>) that a loader meets: no
/// <c>num_logits_to_keep</c> (logits for every position); every layer, sliding ones included,
/// takes and returns the whole past (<c>past_sequence_length</c>), the window being enforced by
/// the mask alone; masks are float (0 or the lowest float) added to the scores; grouped-query
/// heads are repeated (<c>repeat_kv</c>) before two plain 4-D MatMuls.</para>
/// <para>Masks count slots, as transformers' <c>cache_position</c> does: key slot k is visible to
/// query slot q when <c>attention_mask</c> marks k, k ≤ q, and on sliding layers q − k &lt; window.
/// With no padding inside a row (one sequence, or left padding of equal-length rows) slots are positions.</para>
/// </remarks>
public static class Gemma3OptimumGraph
{
    /// <summary>Optimum's dimension names (its <c>TextDecoderOnnxConfig</c>).</summary>
    public const string PastLength = "past_sequence_length";
    public const string TotalLength = "past_sequence_length + sequence_length";

    /// <summary>The graph, without weight initializers (the caller adds those, by name, as for ours).</summary>
    public static GraphProto Build(Gemma3Config config)
    {
        var g = new GraphBuilder("main_graph");
        var (inputIds, attentionMask, positionIds) = DeclareInputs(g, config);
        string hidden = Gemma3Graph.Embed(g, config, inputIds, MathF.Sqrt(config.HiddenSize));
        var (global, sliding) = BuildMasks(g, config, inputIds, attentionMask);
        var rope = Gemma3Graph.RopeTables(g, config, positionIds);
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            string mask = config.LayerKind(layer) == AttentionKind.Sliding ? sliding : global;
            var (cos, sin) = rope[config.RopeBase(layer)];
            using (g.PushScope($"model/layers.{layer}"))
            {
                hidden = Gemma3Graph.DecoderLayer(g, config, layer, hidden, Gemma3Graph.LayerOps.Standard, normed => Gemma3OptimumAttention.Build(g, config, layer, normed, mask, cos, sin));
            }
        }

        using (g.PushScope("model/norm"))
        {
            hidden = Gemma3Graph.RmsNorm(g, hidden, Gemma3Weights.FinalNorm, config.RmsNormEps);
        }

        DeclareLogits(g, config, hidden);
        return g.Graph;
    }

    /// <summary>In the order of <c>Gemma3ForCausalLM.forward</c>'s parameters, as Optimum orders them.</summary>
    private static (string InputIds, string AttentionMask, string PositionIds) DeclareInputs(GraphBuilder g, Gemma3Config config)
    {
        var io = (g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length"),
            g.Input("attention_mask", DataType.Int64, "batch_size", TotalLength),
            g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length"));
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            g.Input(Names.PastKeyOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, PastLength, config.HeadDim);
            g.Input(Names.PastValueOf(layer), DataType.Float, "batch_size", config.NumKeyValueHeads, PastLength, config.HeadDim);
        }

        return io;
    }

    /// <summary>
    /// The full and sliding masks <c>[B, 1, S, T]</c>, 0 where a key is visible and the lowest float
    /// elsewhere (transformers' <c>torch.finfo(dtype).min</c>); the past length is the cache's, as
    /// transformers reads it (<c>past_key_values.get_seq_length()</c>).
    /// </summary>
    private static (string Global, string Sliding) BuildMasks(GraphBuilder g, Gemma3Config config, string inputIds, string attentionMask)
    {
        using var scope = g.PushScope("model/causal_mask");
        string newLength = g.Op("Shape", [inputIds], Attr("start", 1L), Attr("end", 2L));
        string pastLength = g.Op("Shape", [Names.PastKeyOf(0)], Attr("start", 2L), Attr("end", 3L));
        var (keys, queries) = Gemma3Graph.Slots(g, newLength, g.Op("Add", [pastLength, newLength]));
        string padding = g.Op("Unsqueeze", [g.Op("Cast", [attentionMask], Attr("to", (long)DataType.Bool)), g.Int64s(1)]);
        string causal = g.Op("And", [g.Op("LessOrEqual", [keys, queries]), padding]);
        string inWindow = g.Op("Less", [g.Op("Sub", [queries, keys]), g.Int64Scalar(config.SlidingWindow)]);
        return (Additive(g, causal), Additive(g, g.Op("And", [causal, inWindow])));
    }

    /// <summary>[B, S, T] bool → [B, 1, S, T] float: 0 where true, the lowest float where false.</summary>
    private static string Additive(GraphBuilder g, string visible) =>
        g.Op("Unsqueeze", [g.Op("Where", [visible, g.FloatScalar(0f), g.FloatScalar(float.MinValue)]), g.Int64s(1)]);

    /// <summary>
    /// The tied LM head as traced, <c>MatMul(h, Transpose(E))</c>, over every position. A
    /// constant-folded export stores the transposed copy instead; the Transpose keeps our weight names.
    /// </summary>
    private static void DeclareLogits(GraphBuilder g, Gemma3Config config, string hidden)
    {
        using var scope = g.PushScope("lm_head");
        string transposed = g.Op("Transpose", [Gemma3Weights.Embedding], Attr("perm", 1L, 0));
        g.Output(g.Op("MatMul", [hidden, transposed]), "logits", DataType.Float, "batch_size", "sequence_length", config.VocabSize);
    }
}
