using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Models;

/// <summary>Input and output names of a decoder graph, with {0} standing for the layer index.</summary>
public sealed record DecoderNames
{
    public string InputIds { get; init; } = "input_ids";
    public string AttentionMask { get; init; } = "attention_mask";
    public string PositionIds { get; init; } = "position_ids";
    public string NumLogitsToKeep { get; init; } = "num_logits_to_keep";
    public string PastKey { get; init; } = "past_key_values.{0}.key";
    public string PastValue { get; init; } = "past_key_values.{0}.value";
    public string Logits { get; init; } = "logits";
    public string PresentKey { get; init; } = "present.{0}.key";
    public string PresentValue { get; init; } = "present.{0}.value";

    public static string ForLayer(string pattern, int layer) => string.Format(System.Globalization.CultureInfo.InvariantCulture, pattern, layer);

    private static readonly DecoderNames Standard = new();

    /// <summary>The Hugging Face names, which our builders write.</summary>
    public static string PastKeyOf(int layer) => ForLayer(Standard.PastKey, layer);

    public static string PastValueOf(int layer) => ForLayer(Standard.PastValue, layer);

    public static string PresentKeyOf(int layer) => ForLayer(Standard.PresentKey, layer);

    public static string PresentValueOf(int layer) => ForLayer(Standard.PresentValue, layer);
}

/// <summary>One layer's KV cache tensors, <c>[B, Hkv, T, D]</c>.</summary>
/// <param name="HasOwnLength">
/// The layer's past length is a dimension of its own (our sliding layers): the graph returns
/// at most window − 1 slots and the cache may be shorter than the global one.
/// </param>
public sealed record KvLayer(int Index, AttentionKind Kind, string PastKey, string PastValue, string PresentKey, string PresentValue, bool HasOwnLength);

/// <summary>
/// What a decoder graph takes and returns, read from the session metadata and checked
/// against <c>config.json</c>. Optional inputs are null when the graph lacks them.
/// </summary>
public sealed record DecoderSignature(
    string InputIds,
    string? AttentionMask,
    string? PositionIds,
    string? NumLogitsToKeep,
    string Logits,
    TensorElementType LogitsType,
    TensorElementType KvType,
    int KvHeads,
    int HeadDim,
    IReadOnlyList<KvLayer> Layers)
{
    /// <summary>
    /// KV eviction needs explicit positions, since evicted caches no longer count positions;
    /// graphs without <c>position_ids</c> (e.g. fused GroupQueryAttention) derive them from lengths.
    /// </summary>
    public bool SupportsKvCompression => CompressionBlocker is null;

    /// <summary>
    /// Why evicting keys from this graph's caches would change what it computes, or null when it would not: it has
    /// no <c>position_ids</c> or <c>attention_mask</c>; its GroupQueryAttention rotates at positions counted from the
    /// cache; or its sliding layers share the global cache and measure their window in slots (Optimum's exports),
    /// so an eviction would let them see further back. The paged rewrite has none of these.
    /// </summary>
    public string? CompressionBlocker => IsPaged ? null
        : PositionIds is null ? "has no position_ids input"
        : AttentionMask is null ? "has no attention_mask input"
        : RotaryFromCacheLength ? "rotates inside GroupQueryAttention at positions counted from its cache"
        : Layers.Any(layer => layer.Kind == AttentionKind.Sliding) && !Layers.Any(layer => layer.HasOwnLength)
            ? "measures its sliding window in cache slots shared with the global layers" : null;

    /// <summary>
    /// The graph rotates q and k at positions it counts from its caches (GroupQueryAttention with
    /// <c>do_rotary</c>), whatever <c>position_ids</c> it declares: evicting keys would shift every later
    /// position. Only the paged rewrite, which rotates at the true positions, may compress its cache.
    /// </summary>
    public bool RotaryFromCacheLength { get; init; }

    /// <summary>
    /// <c>num_logits_to_keep</c> is declared <c>[1]</c> (ONNX Runtime GenAI feeds that shape); false
    /// for a 0-d input (our folders before 2026-12, transformers.js exports) or one of undeclared
    /// rank (ours since), which both take the scalar.
    /// </summary>
    public bool NumLogitsToKeepIsVector { get; init; }

    /// <summary>The graph reads a paged KV cache (<see cref="PagedAttentionRewrite"/>): no past inputs or present outputs.</summary>
    public bool IsPaged { get; init; }

    /// <summary>The signature of a graph rewritten by <see cref="PagedAttentionRewrite"/>: fp32, every layer from the config.</summary>
    public static DecoderSignature Paged(Gemma3Config config, Generation.Kv.KvCacheDtype kvCacheDtype = Generation.Kv.KvCacheDtype.Fp32)
    {
        var standard = new DecoderNames();
        var layers = Enumerable.Range(0, config.NumHiddenLayers).Select(i => new KvLayer(i, config.LayerKind(i),
            DecoderNames.PastKeyOf(i), DecoderNames.PastValueOf(i), DecoderNames.PresentKeyOf(i), DecoderNames.PresentValueOf(i),
            HasOwnLength: config.LayerKind(i) == AttentionKind.Sliding)).ToList();
        return new DecoderSignature(standard.InputIds, null, standard.PositionIds, null, standard.Logits, TensorElementType.Float, Generation.Kv.KvCacheDtypes.ElementType(kvCacheDtype),
            config.NumKeyValueHeads, config.HeadDim, layers) { IsPaged = true };
    }

    /// <summary>Reads the signature; <paramref name="fail"/> builds the error for a mismatch.</summary>
    public static DecoderSignature Discover(InferenceSession session, Gemma3Config config, DecoderNames names, Func<string, Exception> fail)
    {
        var inputs = session.InputMetadata;
        var outputs = session.OutputMetadata;
        string Require(IReadOnlyDictionary<string, NodeMetadata> map, string name, string what) =>
            map.ContainsKey(name) ? name : throw fail($"the graph has no {what} '{name}' (it has: {string.Join(", ", map.Keys)})");
        string? Optional(string name) => inputs.ContainsKey(name) ? name : null;

        string inputIds = Require(inputs, names.InputIds, "input");
        foreach (string? name in (string?[])[inputIds, Optional(names.AttentionMask), Optional(names.PositionIds), Optional(names.NumLogitsToKeep)])
        {
            if (name is not null && inputs[name].ElementDataType != TensorElementType.Int64)
            {
                throw fail($"input '{name}' has element type {inputs[name].ElementDataType}; only int64 is supported");
            }
        }

        string logits = Require(outputs, names.Logits, "output");
        var layers = new List<KvLayer>();
        for (int i = 0; i < config.NumHiddenLayers; i++)
        {
            string pastKey = Require(inputs, DecoderNames.ForLayer(names.PastKey, i), "input");
            layers.Add(new KvLayer(i, config.LayerKind(i), pastKey,
                Require(inputs, DecoderNames.ForLayer(names.PastValue, i), "input"),
                Require(outputs, DecoderNames.ForLayer(names.PresentKey, i), "output"),
                Require(outputs, DecoderNames.ForLayer(names.PresentValue, i), "output"),
                HasOwnLength: false));
        }

        int extraLayer = config.NumHiddenLayers;
        if (inputs.ContainsKey(DecoderNames.ForLayer(names.PastKey, extraLayer)))
        {
            throw fail($"the graph has more KV layers than num_hidden_layers = {config.NumHiddenLayers} in config.json");
        }

        int[] logitDims = outputs[logits].Dimensions;
        if (logitDims.Length > 0 && logitDims[^1] > 0 && logitDims[^1] != config.VocabSize)
        {
            throw fail($"output '{logits}' has {logitDims[^1]} classes but config.json says vocab_size = {config.VocabSize}");
        }

        NodeMetadata kv = inputs[layers[0].PastKey];
        CheckKvShape(layers, inputs, config, fail);
        string PastDim(KvLayer layer) => inputs[layer.PastKey].SymbolicDimensions[2];
        string globalDim = GlobalPastDim(layers, PastDim);
        if (layers.FirstOrDefault(layer => layer.Kind == AttentionKind.Full && PastDim(layer) != globalDim) is { } wrong)
        {
            throw fail($"layer {wrong.Index}'s cache length ({PastDim(wrong)}) differs from the other full-attention layers' ({globalDim}): "
                + "the graph and config.json's layer_types disagree");
        }

        var withOwnLength = layers.Select(layer => layer with
        {
            HasOwnLength = layer.Kind == AttentionKind.Sliding && PastDim(layer).Length > 0 && PastDim(layer) != globalDim,
        }).ToList();

        string? keep = Optional(names.NumLogitsToKeep);
        int keepRank = keep is null ? 0 : inputs[keep].Dimensions.Length;
        if (keepRank > 1 || (keepRank == 1 && inputs[keep!].Dimensions[0] is not (1 or -1)))
        {
            throw fail($"input '{keep}' has shape [{string.Join(", ", inputs[keep!].Dimensions)}]; expected a scalar or [1]");
        }

        return new DecoderSignature(inputIds, Optional(names.AttentionMask), Optional(names.PositionIds), keep,
            logits, outputs[logits].ElementDataType, kv.ElementDataType, config.NumKeyValueHeads, config.HeadDim, withOwnLength)
        {
            NumLogitsToKeepIsVector = keepRank == 1,
        };
    }

    private static void CheckKvShape(List<KvLayer> layers, IReadOnlyDictionary<string, NodeMetadata> inputs, Gemma3Config config, Func<string, Exception> fail)
    {
        foreach (KvLayer layer in layers)
        {
            foreach (string name in (string[])[layer.PastKey, layer.PastValue])
            {
                NodeMetadata meta = inputs[name];
                if (meta.ElementDataType is not (TensorElementType.Float or TensorElementType.Float16))
                {
                    throw fail($"input '{name}' has element type {meta.ElementDataType}; only float32 and float16 KV caches are supported");
                }

                int[] dims = meta.Dimensions;
                if (dims.Length != 4)
                {
                    throw fail($"input '{name}' has rank {dims.Length}; expected [batch, kv_heads, past, head_dim]");
                }

                if (dims[1] > 0 && dims[1] != config.NumKeyValueHeads)
                {
                    throw fail($"input '{name}' has {dims[1]} KV heads but config.json says num_key_value_heads = {config.NumKeyValueHeads}");
                }

                if (dims[3] > 0 && dims[3] != config.HeadDim)
                {
                    throw fail($"input '{name}' has head size {dims[3]} but config.json says head_dim = {config.HeadDim}");
                }
            }
        }
    }

    /// <summary>The past-length dimension most full-attention layers share ("" when none is named).</summary>
    private static string GlobalPastDim(List<KvLayer> layers, Func<KvLayer, string> pastDim) =>
        layers.Where(layer => layer.Kind == AttentionKind.Full)
            .GroupBy(pastDim)
            .OrderByDescending(group => group.Count())
            .Select(group => group.Key)
            .FirstOrDefault() ?? "";
}
