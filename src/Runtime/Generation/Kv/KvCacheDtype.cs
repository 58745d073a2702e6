using Microsoft.ML.OnnxRuntime.Tensors;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The element type of the paged KV pool (<c>Serving:KvCacheDtype</c>, <c>--kv-cache-dtype</c>): what
/// vLLM calls kv_cache_dtype and llama.cpp <c>--cache-type-k/-v</c>. Activations and attention math stay
/// fp32 either way; fp16 rounds each key and value to nearest even as it is stored, so the pool holds twice
/// the tokens for the same bytes (llama.cpp's default cache type is f16).
/// </summary>
public enum KvCacheDtype
{
    Fp32,
    Fp16,
}

public static class KvCacheDtypes
{
    private static readonly string[] NamesByValue = ["fp32", "fp16"];

    /// <summary>The names <c>--kv-cache-dtype</c> and the configuration accept, in the enum's order.</summary>
    public static IReadOnlyList<string> Names => NamesByValue;

    public static TensorElementType ElementType(this KvCacheDtype dtype) => dtype == KvCacheDtype.Fp16 ? TensorElementType.Float16 : TensorElementType.Float;

    /// <summary>The dtype named <paramref name="name"/> (one of <see cref="Names"/>).</summary>
    /// <exception cref="ArgumentException">Another name; the message lists the accepted ones.</exception>
    public static KvCacheDtype Parse(string name) => Array.IndexOf(NamesByValue, name) is var index and >= 0
        ? (KvCacheDtype)index
        : throw new ArgumentException($"unknown KV cache dtype '{name}' (known: {string.Join(", ", NamesByValue)})", nameof(name));
}
