using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.KvCompression;

/// <summary>The eviction policies one model can use, made once per model (TriAttention needs the model's calibration).</summary>
public sealed class KvPolicies
{
    private readonly Dictionary<string, IKvEvictionPolicy> _policies = [];

    public KvPolicies(Gemma3Config config, KvCalibration? calibration)
    {
        _policies["window"] = new StreamingWindowPolicy();
        _policies["knorm"] = new KeyNormPolicy();
        if (calibration is not null)
        {
            _policies["triattention"] = new TriAttentionPolicy(calibration, config);
        }
    }

    /// <summary>Why <paramref name="name"/> cannot be used with this model, or null when it can (<c>none</c> always can).</summary>
    public string? Unavailable(string name) =>
        name == KvCompressionOptions.None || _policies.ContainsKey(name) ? null
        : name == "triattention" ? $"The model has no KV calibration ({KvCalibration.FileName}), which TriAttention needs; run `serving calibrate-kv` on its folder."
        : $"Unknown KV policy '{name}'; expected one of {string.Join(", ", KvCompressionOptions.PolicyNames)}.";

    /// <summary>The policy named <paramref name="name"/>; call <see cref="Unavailable"/> first.</summary>
    public IKvEvictionPolicy Get(string name) => _policies[name];
}
