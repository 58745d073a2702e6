using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Models.Clip;

/// <summary>
/// The two CLIP towers as ONNX graphs of standard opset-17 operators, with the inputs and
/// outputs of transformers.js exports: <c>input_ids [B,S]</c> → <c>text_embeds [B,P]</c> and
/// <c>pixel_values [B,3,H,W]</c> → <c>image_embeds [B,P]</c> (projected, not normalised).
/// </summary>
public static class ClipGraph
{
    public const int Opset = 17;
    public const long IrVersion = 8;
    public const string InputIds = "input_ids";
    public const string PixelValues = "pixel_values";
    public const string TextEmbeds = "text_embeds";
    public const string ImageEmbeds = "image_embeds";

    /// <summary>
    /// Pre-LN encoder, causal mask, final LN, then the hidden state at the first EOS of each
    /// row (Hugging Face's rule since eos_token_id ≠ 2), projected. Padding after the EOS is
    /// never seen by it: the mask is causal.
    /// </summary>
    public static GraphProto BuildText(ClipConfig config)
    {
        var g = new GraphBuilder("clip_text_model");
        string ids = g.Input(InputIds, DataType.Int64, "batch_size", "sequence_length");
        string hidden, mask;
        using (g.PushScope("text_model/embeddings"))
        {
            string length = g.Op("Gather", [g.Op("Shape", [ids]), g.Int64Scalar(1)], Attr("axis", 0L));
            string positions = g.Op("Slice", [ClipWeights.TextPositions, g.Int64s(0), g.Op("Unsqueeze", [length, g.Int64s(0)]), g.Int64s(0)]);
            hidden = g.Op("Add", [g.Op("Gather", [ClipWeights.TokenEmbedding, ids], Attr("axis", 0L)), positions]);
            mask = CausalMask(g, length);
        }

        hidden = Encoder(g, "text_model", ClipTower.Text, config.Text, hidden, mask);
        using (g.PushScope("text_model/final_layer_norm"))
        {
            hidden = LayerNorm(g, hidden, ClipWeights.TextFinalNorm, config.Text.LayerNormEps);
        }

        string pooled;
        using (g.PushScope("text_model/pooler"))
        {
            string isEos = g.Op("Cast", [g.Op("Equal", [ids, g.Int64Scalar(config.EosTokenId)])], Attr("to", (long)DataType.Float));
            string first = g.Op("ArgMax", [isEos], Attr("axis", 1L), Attr("keepdims", 1L));
            pooled = g.Op("GatherND", [hidden, first], Attr("batch_dims", 1L));
        }

        using (g.PushScope("text_projection"))
        {
            g.Output(g.Op("MatMul", [pooled, ClipWeights.TextProjection]), TextEmbeds, DataType.Float, "batch_size", config.ProjectionDim);
        }

        return g.Graph;
    }

    /// <summary>Patch convolution, class token, positions, pre-LN, encoder, post-LN of the class token, projection.</summary>
    public static GraphProto BuildVision(ClipConfig config)
    {
        var g = new GraphBuilder("clip_vision_model");
        string pixels = g.Input(PixelValues, DataType.Float, "batch_size", ClipConfig.NumChannels, config.ImageSize, config.ImageSize);
        int hiddenSize = config.Vision.HiddenSize;
        string hidden;
        using (g.PushScope("vision_model/embeddings"))
        {
            string patches = g.Op("Conv", [pixels, ClipWeights.PatchEmbedding],
                Attr("kernel_shape", config.PatchSize, config.PatchSize), Attr("strides", config.PatchSize, config.PatchSize));
            patches = g.Op("Transpose", [g.Op("Reshape", [patches, g.Int64s(0, hiddenSize, -1)])], Attr("perm", 0L, 2L, 1L));
            string batch = g.Op("Slice", [g.Op("Shape", [pixels]), g.Int64s(0), g.Int64s(1), g.Int64s(0)]);
            string classToken = g.Op("Expand", [g.Op("Reshape", [ClipWeights.ClassEmbedding, g.Int64s(1, 1, hiddenSize)]),
                g.Op("Concat", [batch, g.Int64s(1, hiddenSize)], Attr("axis", 0L))]);
            hidden = g.Op("Add", [g.Op("Concat", [classToken, patches], Attr("axis", 1L)), ClipWeights.VisionPositions]);
        }

        using (g.PushScope("vision_model/pre_layrnorm"))
        {
            hidden = LayerNorm(g, hidden, ClipWeights.VisionPreNorm, config.Vision.LayerNormEps);
        }

        hidden = Encoder(g, "vision_model", ClipTower.Vision, config.Vision, hidden, mask: null);
        using (g.PushScope("vision_model/post_layernorm"))
        {
            string classState = g.Op("Gather", [hidden, g.Int64Scalar(0)], Attr("axis", 1L));
            hidden = LayerNorm(g, classState, ClipWeights.VisionPostNorm, config.Vision.LayerNormEps);
        }

        using (g.PushScope("visual_projection"))
        {
            g.Output(g.Op("MatMul", [hidden, ClipWeights.VisualProjection]), ImageEmbeds, DataType.Float, "batch_size", config.ProjectionDim);
        }

        return g.Graph;
    }

    /// <summary>[S, S] additive mask: 0 on and below the diagonal, the lowest float above (not −∞, which gives NaN in fully masked rows).</summary>
    private static string CausalMask(GraphBuilder g, string length)
    {
        string range = g.Op("Range", [g.Int64Scalar(0), length, g.Int64Scalar(1)]);
        string rows = g.Op("Unsqueeze", [range, g.Int64s(1)]);
        string columns = g.Op("Unsqueeze", [range, g.Int64s(0)]);
        return g.Op("Where", [g.Op("Greater", [columns, rows]), g.FloatScalar(float.MinValue), g.FloatScalar(0f)]);
    }

    private static string Encoder(GraphBuilder g, string scope, ClipTower tower, ClipTowerConfig config, string hidden, string? mask)
    {
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            using (g.PushScope($"{scope}/encoder/layers.{layer}"))
            {
                string Weight(string name) => ClipWeights.Layer(tower, layer, name);
                string normed;
                using (g.PushScope("layer_norm1"))
                {
                    normed = LayerNorm(g, hidden, Weight("layer_norm1"), config.LayerNormEps);
                }

                using (g.PushScope("self_attn"))
                {
                    hidden = g.Op("Add", [hidden, Attention(g, config, normed, Weight, mask)]);
                }

                using (g.PushScope("layer_norm2"))
                {
                    normed = LayerNorm(g, hidden, Weight("layer_norm2"), config.LayerNormEps);
                }

                using (g.PushScope("mlp"))
                {
                    string up = Linear(g, "fc1", normed, Weight("mlp.fc1"));
                    string activated = g.Op("Mul", [up, g.Op("Sigmoid", [g.Op("Mul", [up, g.FloatScalar(1.702f)])])]);
                    hidden = g.Op("Add", [hidden, Linear(g, "fc2", activated, Weight("mlp.fc2"))]);
                }
            }
        }

        return hidden;
    }

    private static string Attention(GraphBuilder g, ClipTowerConfig config, string x, Func<string, string> weight, string? mask)
    {
        long heads = config.NumAttentionHeads, headDim = config.HeadDim;
        string Heads(string name) => g.Op("Transpose", [g.Op("Reshape", [Linear(g, name, x, weight($"self_attn.{name}")), g.Int64s(0, 0, heads, headDim)])], Attr("perm", 0L, 2L, 1L, 3L));
        string q = g.Op("Mul", [Heads("q_proj"), g.FloatScalar(1f / MathF.Sqrt(headDim))]);
        string k = g.Op("Transpose", [Heads("k_proj")], Attr("perm", 0L, 1L, 3L, 2L));
        string v = Heads("v_proj");
        string scores = g.Op("MatMul", [q, k]);
        if (mask is not null)
        {
            scores = g.Op("Add", [scores, mask]);
        }

        string context = g.Op("MatMul", [g.Op("Softmax", [scores], Attr("axis", -1L)), v]);
        context = g.Op("Reshape", [g.Op("Transpose", [context], Attr("perm", 0L, 2L, 1L, 3L)), g.Int64s(0, 0, heads * headDim)]);
        return Linear(g, "out_proj", context, weight("self_attn.out_proj"));
    }

    private static string Linear(GraphBuilder g, string scope, string x, string prefix)
    {
        using (g.PushScope(scope))
        {
            return g.Op("Add", [g.Op("MatMul", [x, $"{prefix}.weight"]), $"{prefix}.bias"]);
        }
    }

    private static string LayerNorm(GraphBuilder g, string x, string prefix, float eps) =>
        g.Op("LayerNormalization", [x, $"{prefix}.weight", $"{prefix}.bias"], Attr("axis", -1L), Attr("epsilon", eps));
}
