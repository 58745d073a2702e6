using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Tests.Models.Gemma3;

/// <summary>One tiny model folder per test class, its ONNX Runtime session and the reference over the same weights.</summary>
public sealed class TinyModelFixture : IDisposable
{
    private readonly TempFolder _folder = new();

    public TinyModelFixture()
    {
        Gemma3ModelWriter.WriteRandom(_folder.Path, Config, seed: 7);
        Model = DecoderModel.Load(_folder.Path);
        Reference = new Gemma3Reference(Config, ReadWeights(Path.Combine(_folder.Path, Gemma3ModelWriter.OnnxFile)));
    }

    public static Gemma3Config Config => Gemma3Presets.Tiny;

    public string Folder => _folder.Path;
    public DecoderModel Model { get; }
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
        _folder.Dispose();
    }
}
