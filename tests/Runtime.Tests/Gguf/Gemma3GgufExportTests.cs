using Serving.Runtime.Gguf;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Gguf;

/// <summary>
/// The GGUF llama.cpp reads for our tiny folder: layout, names, the 1 + w norms, transposed
/// linears. (That llama.cpp then generates our greedy tokens is checked by
/// benchmarks/llama-peer/check.sh, which needs the LLamaSharp package CI does not restore.)
/// </summary>
public sealed class Gemma3GgufExportTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private GgufFile Export(TempFolder folder, bool padLayout)
    {
        string path = folder.File("model.gguf");
        Gemma3GgufExport.Write(fixture.Folder, path, padLayout);
        return GgufFile.Read(path);
    }

    [Fact]
    public void HeaderMetadataAndAlignmentAreWhatLlamaCppReads()
    {
        using var folder = new TempFolder();
        GgufFile gguf = Export(folder, padLayout: false);
        Gemma3Config config = fixture.Config;

        Assert.Equal(3u, gguf.Version);
        Assert.Equal("gemma3", gguf.Metadata["general.architecture"]);
        Assert.Equal((uint)config.NumHiddenLayers, gguf.Metadata["gemma3.block_count"]);
        Assert.Equal((uint)config.HeadDim, gguf.Metadata["gemma3.attention.key_length"]);
        Assert.Equal((uint)config.SlidingWindow, gguf.Metadata["gemma3.attention.sliding_window"]);
        Assert.Equal((float)config.RopeTheta, gguf.Metadata["gemma3.rope.freq_base"]);
        Assert.Equal(config.VocabSize, ((object[])gguf.Metadata["tokenizer.ggml.tokens"]).Length);
        Assert.Equal("llama", gguf.Metadata["tokenizer.ggml.model"]);
        Assert.Equal(2 + 13 * config.NumHiddenLayers, gguf.Tensors.Count);
        Assert.DoesNotContain(gguf.Tensors, t => t.Name == "output.weight"); // tied to token_embd
        Assert.All(gguf.Tensors, t => Assert.Equal(0, t.Offset % GgufFile.Alignment));
        Assert.Equal(new FileInfo(gguf.Path).Length,
            gguf.DataStart + gguf.Tensors.Max(t => t.Offset + t.Dims.Aggregate(4L, (a, b) => a * b)));
    }

    [Fact]
    public void NormsAreOnePlusWAndLinearsAreTransposed()
    {
        using var folder = new TempFolder();
        GgufFile gguf = Export(folder, padLayout: false);
        var weights = Gemma3ModelFixture.ReadWeights(Path.Combine(fixture.Folder, Gemma3ModelWriter.OnnxFile));
        Gemma3Config c = fixture.Config;

        float[] norm = weights[Gemma3Weights.Layer(1, "self_attn.k_norm.weight")];
        Assert.Equal(norm.Select(w => 1f + w), gguf.ReadTensor("blk.1.attn_k_norm.weight"));

        // ours [in = H, out = I]; ggml {H, I} is row-major [I, H]
        float[] gate = weights[Gemma3Weights.Layer(2, "mlp.gate_proj.weight")];
        float[] ggufGate = gguf.ReadTensor("blk.2.ffn_gate.weight");
        var (_, dims, _, _) = gguf.Tensors.Single(t => t.Name == "blk.2.ffn_gate.weight");
        Assert.Equal([c.HiddenSize, c.IntermediateSize], dims);
        for (int i = 0; i < c.HiddenSize; i += 7)
        {
            for (int o = 0; o < c.IntermediateSize; o += 5)
            {
                Assert.Equal(gate[i * c.IntermediateSize + o], ggufGate[o * c.HiddenSize + i]);
            }
        }

        Assert.Equal(weights[Gemma3Weights.Embedding], gguf.ReadTensor("token_embd.weight"));
    }

    [Fact]
    public void PaddedLayoutPutsEachLayerOnItsKindInLlamaCppsFixedPattern()
    {
        // tiny: sliding, global, sliding, global; llama.cpp: layer i global iff i % 6 == 5
        Assert.Equal([0, null, null, null, null, 1, 2, null, null, null, null, 3], Gemma3GgufExport.PaddedLayout(fixture.Config));
        Assert.Equal(2, Gemma3GgufExport.LayoutMismatches(fixture.Config).Count);
        Assert.Empty(Gemma3GgufExport.LayoutMismatches(Gemma3Presets.Gemma3_270M));

        using var folder = new TempFolder();
        GgufFile gguf = Export(folder, padLayout: true);
        Assert.Equal(12u, gguf.Metadata["gemma3.block_count"]);
        Assert.All(gguf.ReadTensor("blk.3.attn_output.weight"), w => Assert.Equal(0f, w)); // identity layer
        var weights = Gemma3ModelFixture.ReadWeights(Path.Combine(fixture.Folder, Gemma3ModelWriter.OnnxFile));
        Assert.Equal(weights[Gemma3Weights.Layer(1, "input_layernorm.weight")].Select(w => 1f + w), gguf.ReadTensor("blk.5.attn_norm.weight"));
    }

    [Fact]
    public void VocabularyScoresRankMergedPiecesAboveTheAlphabet()
    {
        using var folder = new TempFolder();
        GgufFile gguf = Export(folder, padLayout: false);
        string[] tokens = [.. ((object[])gguf.Metadata["tokenizer.ggml.tokens"]).Cast<string>()];
        float[] scores = [.. ((object[])gguf.Metadata["tokenizer.ggml.scores"]).Cast<float>()];
        int[] types = [.. ((object[])gguf.Metadata["tokenizer.ggml.token_type"]).Cast<int>()];

        Assert.Equal(3, types[Array.IndexOf(tokens, "<bos>")]); // control
        Assert.Equal(6, types[Array.IndexOf(tokens, "<0x41>")]); // byte
        Assert.Equal(1, types[Array.IndexOf(tokens, "t")]);
        Assert.True(scores[Array.IndexOf(tokens, "th")] > scores[Array.IndexOf(tokens, "t")]);
        Assert.Equal(false, gguf.Metadata["tokenizer.ggml.add_space_prefix"]);
    }
}
