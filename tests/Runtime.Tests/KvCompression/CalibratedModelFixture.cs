using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.KvCompression;

/// <summary>
/// The tiny preset (2 KV heads of 2 query heads each, 16-token window, alternating local and
/// global layers) with a KV calibration made by <see cref="KvCalibrator"/> on pseudo-text.
/// </summary>
public sealed class CalibratedModelFixture : IDisposable
{
    private readonly TempFolder _folder = new();

    public CalibratedModelFixture()
    {
        Config = Gemma3Presets.Tiny;
        Gemma3ModelWriter.WriteRandom(_folder.Path, Config, Seed);
        Calibration = Calibrate(_folder.Path);
        Calibration.Save(Path.Combine(_folder.Path, KvCalibration.FileName));
        Model = DecoderModel.Load(_folder.Path);
        PagedModel = DecoderModel.Load(_folder.Path, new DecoderLoadOptions { PagedAttention = true });
    }

    public const ulong Seed = 11;

    /// <summary>The calibration of a tiny folder of ours, on 600 tokens of <see cref="Text"/>.</summary>
    public static KvCalibration Calibrate(string folder) =>
        KvCalibrator.Calibrate(Path.Combine(folder, Gemma3ModelWriter.OnnxFile), Gemma3Presets.Tiny, Text(600, 3));

    public Gemma3Config Config { get; }
    public KvCalibration Calibration { get; }
    public DecoderModel Model { get; }

    /// <summary>The same folder loaded for the serving engine (attention over the paged KV cache).</summary>
    public DecoderModel PagedModel { get; }
    public string Folder => _folder.Path;

    /// <summary>Deterministic token ids in the model's vocabulary.</summary>
    public static int[] Text(int length, int salt) => Enumerable.Range(0, length).Select(i => 7 + (i * 37 + salt * 101 + i * i % 13) % 1000).ToArray();

    public void Dispose()
    {
        Model.Dispose();
        PagedModel.Dispose();
        _folder.Dispose();
    }
}
