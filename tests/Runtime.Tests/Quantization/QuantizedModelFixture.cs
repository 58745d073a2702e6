using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Quantization;

namespace Serving.Runtime.Tests.Quantization;

/// <summary>The tiny preset (seed 7) and its q4, q8 and fp16 folders, written once per test class.</summary>
public sealed class QuantizedModelFixture : IDisposable
{
    private readonly TempFolder _temp = new();

    public QuantizedModelFixture()
    {
        Fp32 = Path.Combine(_temp.Path, "fp32");
        Gemma3ModelWriter.WriteRandom(Fp32, Gemma3Presets.Tiny, seed: 7);
        foreach (string dtype in Quantizer.Dtypes)
        {
            string folder = Path.Combine(_temp.Path, dtype);
            Reports[dtype] = Quantizer.Run(new QuantizeOptions(Fp32, folder, dtype));
            Folders[dtype] = folder;
        }
    }

    public string Root => _temp.Path;

    public string Fp32 { get; }

    public Dictionary<string, string> Folders { get; } = [];

    public Dictionary<string, QuantizeReport> Reports { get; } = [];

    public void Dispose() => _temp.Dispose();
}
