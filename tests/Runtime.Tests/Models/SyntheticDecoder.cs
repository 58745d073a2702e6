using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Models;

/// <summary>
/// Decoder-shaped graphs with other signatures than ours (no attention_mask or position_ids,
/// num_logits_to_keep, genai-style names, float16), for the loader and runner. The logits of
/// token t peak at t + 1 (logit −|v − t − 1|), so greedy decoding counts up from the last
/// prompt token; present is past plus the new tokens' zero keys.
/// </summary>
internal static class SyntheticDecoder
{
    /// <param name="NumLogitsToKeepVector">Declares num_logits_to_keep <c>[1]</c> (as ONNX Runtime GenAI feeds it), sliced without an Unsqueeze.</param>
    public sealed record Shape(bool AttentionMask = true, bool PositionIds = true, bool NumLogitsToKeep = false, bool NumLogitsToKeepVector = false,
        string PastKey = "past_key_values.{0}.key", string PastValue = "past_key_values.{0}.value",
        string PresentKey = "present.{0}.key", string PresentValue = "present.{0}.value", bool Float16 = false);

    public static void Write(string path, Gemma3Config config, Shape shape)
    {
        var g = new GraphBuilder("synthetic");
        string ids = g.Input("input_ids", DataType.Int64, "batch_size", "sequence_length");
        if (shape.AttentionMask)
        {
            g.Input("attention_mask", DataType.Int64, "batch_size", "total_sequence_length");
        }

        if (shape.PositionIds)
        {
            g.Input("position_ids", DataType.Int64, "batch_size", "sequence_length");
        }

        if (shape.NumLogitsToKeep)
        {
            g.Input("num_logits_to_keep", DataType.Int64, shape.NumLogitsToKeepVector ? [1] : []);
        }

        DataType floats = shape.Float16 ? DataType.Float16 : DataType.Float;
        string kept = shape.NumLogitsToKeep
            ? g.Op("Slice", [ids, StartOfKept(g, shape), g.Int64s(long.MaxValue), g.Int64s(1)])
            : ids;
        string next = g.Op("Unsqueeze", [g.Op("Add", [kept, g.Int64Scalar(1)]), g.Int64s(2)]);
        string distance = g.Op("Abs", [g.Op("Sub", [g.Op("Range", [g.Int64Scalar(0), g.Int64Scalar(config.VocabSize), g.Int64Scalar(1)]), next])]);
        string logits = g.Op("Cast", [g.Op("Neg", [distance])], GraphBuilder.Attr("to", (long)floats));
        g.Output(logits, "logits", floats, "batch_size", "logits_length", config.VocabSize);

        string newShape = g.Op("Concat", [g.Op("Shape", [ids], GraphBuilder.Attr("end", 1L)), g.Int64s(config.NumKeyValueHeads),
            g.Op("Shape", [ids], GraphBuilder.Attr("start", 1L)), g.Int64s(config.HeadDim)], GraphBuilder.Attr("axis", 0L));
        string zeros = g.Op("Cast", [g.Op("Expand", [g.FloatScalar(0f), newShape])], GraphBuilder.Attr("to", (long)floats));
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            foreach (var (pastPattern, presentPattern) in new[] { (shape.PastKey, shape.PresentKey), (shape.PastValue, shape.PresentValue) })
            {
                string past = g.Input(Name(pastPattern, layer), floats, "batch_size", config.NumKeyValueHeads, "past_sequence_length", config.HeadDim);
                g.Output(g.Op("Concat", [past, zeros], GraphBuilder.Attr("axis", 2L)), Name(presentPattern, layer),
                    floats, "batch_size", config.NumKeyValueHeads, "total_sequence_length", config.HeadDim);
            }
        }

        var model = new ModelProto { IrVersion = 8, Graph = g.Graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        OnnxModelFile.Save(model, path);
    }

    private static string StartOfKept(GraphBuilder g, Shape shape)
    {
        string negated = g.Op("Neg", ["num_logits_to_keep"]);
        return shape.NumLogitsToKeepVector ? negated : g.Op("Unsqueeze", [negated, g.Int64s(0)]);
    }

    private static string Name(string pattern, int layer) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, layer);
}
