using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Gguf;

/// <summary>
/// Turns one of our Gemma 3 folders (config.json, onnx/model.onnx + model.onnx_data,
/// tokenizer.json) into a llama.cpp <c>gemma3</c> GGUF at f32 that computes the same function.
/// </summary>
/// <remarks>
/// <para>What has to change on the way (checked against llama.cpp's gemma3 graph and its
/// Hugging Face converter):</para>
/// <list type="bullet">
/// <item>RMSNorm weights: our graph multiplies by <c>1 + w</c> and stores <c>w</c> (Hugging Face's
/// form); llama.cpp multiplies by the stored weight, so every norm (q/k norms included) is
/// written as <c>1 + w</c>.</item>
/// <item>Linear weights: ours are MatMul right operands <c>[in, out]</c>; ggml wants
/// <c>ne = {in, out}</c>, i.e. row-major <c>[out, in]</c> (PyTorch's layout): transposed.</item>
/// <item>The embedding <c>[V, H]</c> is already ggml's <c>{H, V}</c>; llama.cpp scales it by
/// √H itself, as our graph does, and ties the LM head to it when no <c>output</c> tensor exists.</item>
/// </list>
/// <para>llama.cpp c0c7e147 (LLamaSharp 0.30.0) fixes gemma3's layer layout in code: every 6th
/// layer global, the rest sliding with RoPE base 10,000; it reads no pattern key.
/// <see cref="LayoutMismatches"/> names the layers where a folder differs (tiny is 1:1,
/// kjv-gemma3 2:1): there llama.cpp computes another function. With <c>padLayout</c> the
/// writer places each of our layers at the next llama.cpp layer of the same kind and fills the
/// gaps with all-zero layers, which are exact identities (attention and MLP outputs are 0, and
/// x + 0 = x): the same function, for correctness checks only (the zero layers still cost
/// compute, so such a file is no benchmark).</para>
/// </remarks>
public static class Gemma3GgufExport
{
    /// <summary>llama.cpp's <c>set_swa_pattern(6)</c> for gemma3: layer i is global iff i % 6 == 5.</summary>
    public const int LlamaCppSwaPeriod = 6;

    /// <summary>llama.cpp's fixed local RoPE base for gemma3's sliding layers.</summary>
    public const double LlamaCppLocalRopeBase = 10_000.0;

    public static Gemma3Config ReadConfig(string folder) =>
        Gemma3Config.FromJson(JsonNode.Parse(File.ReadAllText(Path.Combine(folder, "config.json")))!.AsObject());

    /// <summary>Layers whose attention kind or RoPE base llama.cpp's fixed gemma3 layout would change.</summary>
    public static IReadOnlyList<string> LayoutMismatches(Gemma3Config config)
    {
        var problems = new List<string>();
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            bool llamaGlobal = IsLlamaCppGlobal(layer);
            bool oursGlobal = config.LayerKind(layer) == AttentionKind.Full;
            if (llamaGlobal != oursGlobal)
            {
                problems.Add($"layer {layer} is {(oursGlobal ? "global" : "sliding")} here, {(llamaGlobal ? "global" : "sliding")} in llama.cpp");
            }
        }

        if (config.RopeLocalBaseFreq != LlamaCppLocalRopeBase)
        {
            problems.Add($"local RoPE base {config.RopeLocalBaseFreq} here, {LlamaCppLocalRopeBase} in llama.cpp");
        }

        return problems;
    }

    /// <summary>
    /// For each llama.cpp layer, the layer of ours it holds (null: an all-zero identity layer),
    /// so that every layer of ours lands on a llama.cpp layer of the same kind.
    /// </summary>
    public static int?[] PaddedLayout(Gemma3Config config)
    {
        if (config.RopeLocalBaseFreq != LlamaCppLocalRopeBase)
        {
            throw new InvalidDataException($"local RoPE base {config.RopeLocalBaseFreq}: llama.cpp's gemma3 fixes it at {LlamaCppLocalRopeBase}, padding cannot help");
        }

        var layout = new List<int?>();
        for (int layer = 0; layer < config.NumHiddenLayers; layer++)
        {
            bool global = config.LayerKind(layer) == AttentionKind.Full;
            while (IsLlamaCppGlobal(layout.Count) != global)
            {
                layout.Add(null);
            }

            layout.Add(layer);
        }

        return [.. layout];
    }

    private static bool IsLlamaCppGlobal(int layer) => layer % LlamaCppSwaPeriod == LlamaCppSwaPeriod - 1;

    public static void Write(string folder, string outputPath, bool padLayout = false)
    {
        Gemma3Config config = ReadConfig(folder);
        int?[] layout = padLayout ? PaddedLayout(config) : [.. Enumerable.Range(0, config.NumHiddenLayers).Select(i => (int?)i)];
        string onnxPath = Path.Combine(folder, Gemma3ModelWriter.OnnxFile);
        string onnxDirectory = Path.GetDirectoryName(onnxPath)!;
        ModelProto model = OnnxModelFile.Load(onnxPath);
        var initializers = model.Graph.Initializer.ToDictionary(t => t.Name, StringComparer.Ordinal);

        var gguf = new GgufWriter();
        AddHyperparameters(gguf, config, Path.GetFileName(Path.GetFullPath(folder).TrimEnd('/')), layout.Length);
        GgufVocabulary.Read(Path.Combine(folder, "tokenizer.json")).AddTo(gguf, config);
        foreach (GgufTensor tensor in Tensors(config, layout, name => Read(initializers, name, onnxDirectory)))
        {
            gguf.AddTensor(tensor);
        }

        gguf.Write(outputPath);
    }

    private static void AddHyperparameters(GgufWriter gguf, Gemma3Config config, string name, int numLayers)
    {
        const string a = "gemma3";
        gguf.Add("general.architecture", a);
        gguf.Add("general.name", name);
        gguf.Add("general.alignment", (uint)GgufWriter.Alignment);
        gguf.Add("general.file_type", 0u); // ALL_F32
        gguf.Add($"{a}.context_length", (uint)config.MaxPositionEmbeddings);
        gguf.Add($"{a}.embedding_length", (uint)config.HiddenSize);
        gguf.Add($"{a}.block_count", (uint)numLayers);
        gguf.Add($"{a}.feed_forward_length", (uint)config.IntermediateSize);
        gguf.Add($"{a}.attention.head_count", (uint)config.NumAttentionHeads);
        gguf.Add($"{a}.attention.head_count_kv", (uint)config.NumKeyValueHeads);
        // Without these llama.cpp takes hidden / heads (640 / 4 = 160 for 270M, not 256).
        gguf.Add($"{a}.attention.key_length", (uint)config.HeadDim);
        gguf.Add($"{a}.attention.value_length", (uint)config.HeadDim);
        gguf.Add($"{a}.attention.layer_norm_rms_epsilon", (float)config.RmsNormEps);
        gguf.Add($"{a}.attention.sliding_window", (uint)config.SlidingWindow);
        gguf.Add($"{a}.rope.freq_base", (float)config.RopeTheta);
        // Read by newer llama.cpp builds; c0c7e147 fixes it at 10,000 (see LayoutMismatches).
        gguf.Add($"{a}.rope.freq_base_swa", (float)config.RopeLocalBaseFreq);
    }

    /// <summary>llama.cpp's tensor names, in its load order, each read lazily from the initializers.</summary>
    private static IEnumerable<GgufTensor> Tensors(Gemma3Config config, int?[] layout, Func<string, float[]> read)
    {
        yield return new("token_embd.weight", [config.HiddenSize, config.VocabSize], () => read(Gemma3Weights.Embedding));
        yield return Norm("output_norm.weight", config.HiddenSize, Gemma3Weights.FinalNorm, read);
        for (int b = 0; b < layout.Length; b++)
        {
            IEnumerable<GgufTensor> tensors = layout[b] is int layer
                ? LayerTensors(config, $"blk.{b}", name => read(Gemma3Weights.Layer(layer, name)))
                : LayerTensors(config, $"blk.{b}", name => read(Gemma3Weights.Layer(0, name)))
                    .Select(t => t with { Values = () => new float[t.ElementCount] }); // an identity layer: all zero
            foreach (GgufTensor tensor in tensors)
            {
                yield return tensor;
            }
        }
    }

    /// <summary>One decoder layer; <paramref name="read"/> takes the name inside the layer (e.g. "mlp.up_proj.weight").</summary>
    private static IEnumerable<GgufTensor> LayerTensors(Gemma3Config config, string blk, Func<string, float[]> read)
    {
        int h = config.HiddenSize, d = config.HeadDim, inter = config.IntermediateSize;
        int q = config.NumAttentionHeads * d, kv = config.NumKeyValueHeads * d;
        yield return Norm($"{blk}.attn_norm.weight", h, "input_layernorm.weight", read);
        yield return Linear($"{blk}.attn_q.weight", h, q, "self_attn.q_proj.weight", read);
        yield return Linear($"{blk}.attn_k.weight", h, kv, "self_attn.k_proj.weight", read);
        yield return Linear($"{blk}.attn_v.weight", h, kv, "self_attn.v_proj.weight", read);
        yield return Linear($"{blk}.attn_output.weight", q, h, "self_attn.o_proj.weight", read);
        yield return Norm($"{blk}.attn_q_norm.weight", d, "self_attn.q_norm.weight", read);
        yield return Norm($"{blk}.attn_k_norm.weight", d, "self_attn.k_norm.weight", read);
        yield return Norm($"{blk}.post_attention_norm.weight", h, "post_attention_layernorm.weight", read);
        yield return Norm($"{blk}.ffn_norm.weight", h, "pre_feedforward_layernorm.weight", read);
        yield return Linear($"{blk}.ffn_gate.weight", h, inter, "mlp.gate_proj.weight", read);
        yield return Linear($"{blk}.ffn_up.weight", h, inter, "mlp.up_proj.weight", read);
        yield return Linear($"{blk}.ffn_down.weight", inter, h, "mlp.down_proj.weight", read);
        yield return Norm($"{blk}.post_ffw_norm.weight", h, "post_feedforward_layernorm.weight", read);
    }

    private static GgufTensor Norm(string name, int size, string source, Func<string, float[]> read) =>
        new(name, [size], () =>
        {
            float[] w = read(source);
            for (int i = 0; i < w.Length; i++)
            {
                w[i] += 1f;
            }

            return w;
        });

    /// <summary>Our [in, out] MatMul operand → ggml {in, out} (row-major [out, in]).</summary>
    private static GgufTensor Linear(string name, int inputs, int outputs, string source, Func<string, float[]> read) =>
        new(name, [inputs, outputs], () =>
        {
            float[] w = read(source);
            if (w.LongLength != (long)inputs * outputs)
            {
                throw new InvalidDataException($"'{source}' has {w.LongLength} values, expected [{inputs}, {outputs}]");
            }

            var t = new float[w.Length];
            for (int i = 0; i < inputs; i++)
            {
                for (int o = 0; o < outputs; o++)
                {
                    t[(long)o * inputs + i] = w[(long)i * outputs + o];
                }
            }

            return t;
        });

    private static float[] Read(Dictionary<string, TensorProto> initializers, string name, string onnxDirectory) =>
        Gemma3Weights.Read(initializers, name, onnxDirectory);
}
