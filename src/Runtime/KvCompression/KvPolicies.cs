using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Models;

namespace Serving.Runtime.KvCompression;

/// <summary>
/// The eviction policies one model can use, made once per model (TriAttention needs the
/// model's calibration), and the check of compression options against that model.
/// </summary>
public sealed class KvPolicies
{
    private readonly Dictionary<string, IKvEvictionPolicy> _policies = [];
    private readonly int _slidingSlots;

    public KvPolicies(DecoderModel model)
    {
        var layout = new KvLayout(model.Signature, model.Config.SlidingWindow);
        _slidingSlots = layout.NumTrimmedLayers > 0 ? layout.SlidingSlots : 0;
        _policies["window"] = new StreamingWindowPolicy();
        _policies["knorm"] = new KeyNormPolicy();
        if (model.KvCalibration is { } calibration)
        {
            _policies["triattention"] = new TriAttentionPolicy(calibration, model.Config);
        }
    }

    /// <summary>Why <paramref name="options"/> cannot run on this model, as (field, message), or null.</summary>
    public (string Field, string Message)? Validate(KvCompressionOptions options)
    {
        if (options.Validate(_slidingSlots) is { } invalid)
        {
            return invalid;
        }

        return options.IsEnabled && !_policies.ContainsKey(options.Policy)
            ? ("policy", $"The model has no KV calibration ({KvCalibration.FileName}), which TriAttention needs; run `serving calibrate-kv` on its folder.")
            : null;
    }

    /// <summary>The policy named <paramref name="name"/>; <see cref="Validate"/> the options first.</summary>
    public IKvEvictionPolicy Get(string name) => _policies[name];
}
