using System.Text.Json;
using System.Text.Json.Serialization;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// TriAttention's per-model statistics of pre-RoPE queries: for each (layer, query head, band
/// f), the complex mean E[q_f] and the mean modulus E|q_f|, with z_f = x[f] + i·x[f + d/2]
/// (the rotate-half pairing of RoPE). Written by <c>serving calibrate-kv</c> into the model
/// folder as <see cref="FileName"/>.
/// </summary>
public sealed class KvCalibration
{
    public const string FileName = "kv_calibration.json";
    private const string Format = "serving-kv-calibration/1";

    private readonly float[] _meanRe, _meanIm, _meanModulus;

    public KvCalibration(int layers, int queryHeads, int headDim, long tokens, float[] meanRe, float[] meanIm, float[] meanModulus)
    {
        int count = layers * queryHeads * (headDim / 2);
        if (layers < 1 || queryHeads < 1 || headDim < 2 || headDim % 2 != 0 || meanRe.Length != count || meanIm.Length != count || meanModulus.Length != count)
        {
            throw new ArgumentException($"a calibration of {layers} layers × {queryHeads} heads × {headDim / 2} bands needs {count} values per statistic");
        }

        (Layers, QueryHeads, HeadDim, Tokens) = (layers, queryHeads, headDim, tokens);
        (_meanRe, _meanIm, _meanModulus) = (meanRe, meanIm, meanModulus);
    }

    public int Layers { get; }
    public int QueryHeads { get; }
    public int HeadDim { get; }
    public int Bands => HeadDim / 2;

    /// <summary>Query tokens the statistics were taken over.</summary>
    public long Tokens { get; }

    /// <summary>Re E[q_f] for the bands of (layer, head).</summary>
    public ReadOnlySpan<float> MeanRe(int layer, int head) => _meanRe.AsSpan(Offset(layer, head), Bands);

    public ReadOnlySpan<float> MeanIm(int layer, int head) => _meanIm.AsSpan(Offset(layer, head), Bands);

    /// <summary>E|q_f| for the bands of (layer, head).</summary>
    public ReadOnlySpan<float> MeanModulus(int layer, int head) => _meanModulus.AsSpan(Offset(layer, head), Bands);

    private int Offset(int layer, int head) => (layer * QueryHeads + head) * Bands;

    /// <summary>Throws <see cref="InvalidDataException"/> when the calibration was made for another shape of model.</summary>
    public void CheckFits(Gemma3Config config)
    {
        if (Layers != config.NumHiddenLayers || QueryHeads != config.NumAttentionHeads || HeadDim != config.HeadDim)
        {
            throw new InvalidDataException($"the calibration is for {Layers} layers × {QueryHeads} query heads × head_dim {HeadDim}, "
                + $"but config.json has {config.NumHiddenLayers} × {config.NumAttentionHeads} × {config.HeadDim}; run serving calibrate-kv again");
        }
    }

    /// <summary>The folder's calibration, or null when it has none.</summary>
    public static KvCalibration? TryLoad(string folder, Gemma3Config config)
    {
        string path = Path.Combine(folder, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        KvCalibration calibration = Load(path);
        calibration.CheckFits(config);
        return calibration;
    }

    /// <summary>Reads a calibration file; <see cref="InvalidDataException"/> says what is wrong (callers name the file).</summary>
    public static KvCalibration Load(string path)
    {
        CalibrationFile file;
        try
        {
            file = JsonSerializer.Deserialize(File.ReadAllText(path), CalibrationJson.Default.CalibrationFile)
                ?? throw new InvalidDataException("the file is empty");
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"not a KV calibration file: {e.Message}", e);
        }

        if (file.Format != Format)
        {
            throw new InvalidDataException($"format '{file.Format}' is not '{Format}'");
        }

        try
        {
            return new KvCalibration(file.NumLayers, file.NumQueryHeads, file.HeadDim, file.Tokens, file.MeanRe, file.MeanIm, file.MeanModulus);
        }
        catch (ArgumentException e)
        {
            throw new InvalidDataException(e.Message, e);
        }
    }

    /// <summary>Writes the file through a temporary name, so a reader never sees half of it.</summary>
    public void Save(string path)
    {
        var file = new CalibrationFile(Format, Layers, QueryHeads, HeadDim, Tokens, _meanRe, _meanIm, _meanModulus);
        string temporary = path + ".tmp";
        File.WriteAllText(temporary, JsonSerializer.Serialize(file, CalibrationJson.Default.CalibrationFile));
        File.Move(temporary, path, overwrite: true);
    }
}

/// <summary>The JSON layout: flat arrays indexed ((layer × heads) + head) × bands + band.</summary>
internal sealed record CalibrationFile(
    string Format,
    int NumLayers,
    int NumQueryHeads,
    int HeadDim,
    long Tokens,
    float[] MeanRe,
    float[] MeanIm,
    float[] MeanModulus);

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.SnakeCaseLower)]
[JsonSerializable(typeof(CalibrationFile))]
internal sealed partial class CalibrationJson : JsonSerializerContext;
