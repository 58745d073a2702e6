using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>KV layouts without a model: one letter a layer, G global, S sliding.</summary>
internal static class KvLayouts
{
    public static KvLayout Of(string layers, int window = 9, int heads = 1, int headDim = 4, TensorElementType type = TensorElementType.Float)
    {
        var kvLayers = new List<KvLayer>();
        for (int i = 0; i < layers.Length; i++)
        {
            bool sliding = layers[i] == 'S';
            kvLayers.Add(new KvLayer(i, sliding ? AttentionKind.Sliding : AttentionKind.Full, "", "", "", "", HasOwnLength: sliding));
        }

        var signature = new DecoderSignature("input_ids", null, null, null, "logits", TensorElementType.Float, type, heads, headDim, kvLayers);
        return new KvLayout(signature, window);
    }
}
