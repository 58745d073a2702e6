using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>One model folder per test class, its ONNX Runtime session and the reference over the same weights.</summary>
public abstract class Gemma3ModelFixture : IDisposable
{
    private readonly TempFolder _folder = new();
    private readonly Lazy<DecoderModel> _paged;

    protected Gemma3ModelFixture(Gemma3Config config, Gemma3ExportStyle style = Gemma3ExportStyle.Serving)
    {
        const ulong seed = 7;
        Config = config;
        Style = style;
        Gemma3ModelWriter.WriteRandom(_folder.Path, Config, seed, style: style);
        Model = DecoderModel.Load(_folder.Path);
        _paged = new Lazy<DecoderModel>(() => DecoderModel.Load(_folder.Path, new DecoderLoadOptions { PagedAttention = true }));
        // Other styles store the same weights in their own layout (norms as 1 + w, packed q/k/v): the reference takes the seeded originals.
        Reference = new Gemma3Reference(Config, style == Gemma3ExportStyle.Serving
            ? ReadWeights(Path.Combine(_folder.Path, Gemma3ModelWriter.OnnxFile))
            : Gemma3Weights.Specs(Config).ToDictionary(spec => spec.Name, spec => Gemma3Weights.Random(spec, seed)));
    }

    public Gemma3ExportStyle Style { get; }

    public Gemma3Config Config { get; }

    public string Folder => _folder.Path;
    public DecoderModel Model { get; }

    /// <summary>The same folder loaded for the serving engine (attention over the paged KV cache).</summary>
    public DecoderModel PagedModel => _paged.Value;

    public Gemma3Reference Reference { get; }

    /// <summary>The weights exactly as stored in the ONNX file the session runs.</summary>
    public static Dictionary<string, float[]> ReadWeights(string onnxPath)
    {
        ModelProto model = OnnxModelFile.Load(onnxPath);
        string directory = Path.GetDirectoryName(onnxPath)!;
        return model.Graph.Initializer
            .Where(tensor => tensor.Name.StartsWith("model.", StringComparison.Ordinal))
            .ToDictionary(tensor => tensor.Name, tensor => TensorData.ReadFloats(tensor, directory));
    }

    public void Dispose()
    {
        Model.Dispose();
        if (_paged.IsValueCreated)
        {
            _paged.Value.Dispose();
        }

        _folder.Dispose();
    }
}

/// <summary>The <c>tiny</c> preset: GQA with 2 KV heads, alternating local/global layers.</summary>
public sealed class TinyModelFixture() : Gemma3ModelFixture(Gemma3Presets.Tiny);

/// <summary>The <c>tiny</c> preset written as onnx-community exports it (GroupQueryAttention, same seed).</summary>
public sealed class TinyOnnxCommunityFixture() : Gemma3ModelFixture(Gemma3Presets.Tiny, Gemma3ExportStyle.OnnxCommunity);

/// <summary>The <c>tiny</c> preset written as ONNX Runtime GenAI's builder does (packed q/k/v, GroupQueryAttention, same seed).</summary>
public sealed class TinyGenAiFixture() : Gemma3ModelFixture(Gemma3Presets.Tiny, Gemma3ExportStyle.GenAi);

/// <summary>The <c>tiny</c> preset with <see cref="TinyModelFixture"/>'s weights, written as Hugging Face Optimum exports it.</summary>
public sealed class OptimumTinyModelFixture() : Gemma3ModelFixture(Gemma3Presets.Tiny, Gemma3ExportStyle.Optimum);

/// <summary>
/// The real Gemma 3 layout at toy width: one KV head, head_dim 256 (more than hidden / heads),
/// five sliding layers to one global, query_pre_attn_scalar 256.
/// </summary>
public sealed class GemmaShapedModelFixture() : Gemma3ModelFixture(Shape)
{
    public static Gemma3Config Shape { get; } = Gemma3Presets.Tiny with
    {
        NumHiddenLayers = 6,
        NumKeyValueHeads = 1,
        HeadDim = 256,
        SlidingWindowPattern = 6,
        SlidingWindow = 8,
        QueryPreAttnScalar = 256,
    };
}

/// <summary><see cref="GemmaShapedModelFixture"/>'s weights as Optimum exports them: repeat_kv makes four query heads of one KV head.</summary>
public sealed class OptimumGemmaShapedModelFixture() : Gemma3ModelFixture(GemmaShapedModelFixture.Shape, Gemma3ExportStyle.Optimum);
