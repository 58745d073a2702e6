using Serving.Runtime.Models.Clip;
using Serving.Trainer.Model;

namespace Serving.Trainer.Clip;

/// <summary>
/// Every trainable tensor of a CLIP dual encoder: the builder's weights in
/// <see cref="ClipWeights.Specs"/> order, then the learned log temperature
/// (<see cref="LogitScaleName"/>), which the exported graphs do not need.
/// </summary>
public sealed class ClipParameters
{
    public const string LogitScaleName = "logit_scale";

    /// <summary>log(1/0.07), CLIP's initial temperature (Radford et al. 2021).</summary>
    public const float InitialLogitScale = 2.6592f;

    /// <summary>Logits are capped at 100× the cosine, as in CLIP.</summary>
    public static readonly float MaxLogitScale = MathF.Log(100f);

    private readonly Dictionary<string, Parameter> _byName;

    private ClipParameters(ClipConfig config, IReadOnlyList<Parameter> all)
    {
        Config = config;
        All = all;
        _byName = all.ToDictionary(p => p.Name);
    }

    public ClipConfig Config { get; }
    public IReadOnlyList<Parameter> All { get; }
    public Parameter this[string name] => _byName[name];
    public Parameter LogitScale => _byName[LogitScaleName];
    public long Count => All.Sum(p => (long)p.Value.Length);

    /// <summary>
    /// Seeded start: the builder's random matrices and embeddings (N(0, 1/fan_in), N(0, 0.02²)),
    /// LayerNorm gains 1 and every bias 0, as Hugging Face initialises CLIP.
    /// </summary>
    public static ClipParameters Initialize(ClipConfig config, ulong seed) => FromValues(config, spec => IsNormOrBias(spec)
        ? Filled((int)spec.ElementCount, spec.Name.EndsWith(".weight", StringComparison.Ordinal) ? 1f : 0f)
        : ClipWeights.Random(spec, seed), InitialLogitScale);

    public static ClipParameters FromValues(ClipConfig config, Func<ClipWeight, float[]> values, float logitScale)
    {
        config.Validate();
        var all = new List<Parameter>();
        foreach (ClipWeight spec in ClipWeights.Specs(config))
        {
            float[] value = values(spec);
            if (value.LongLength != spec.ElementCount)
            {
                throw new ArgumentException($"weight '{spec.Name}' has {value.LongLength} values, expected {spec.ElementCount}");
            }

            all.Add(new Parameter(spec.Name, value, decays: spec.Shape.Length >= 2));
        }

        all.Add(new Parameter(LogitScaleName, [logitScale], decays: false));
        return new ClipParameters(config, all);
    }

    public void ZeroGradients()
    {
        foreach (Parameter p in All)
        {
            Array.Clear(p.Gradient);
        }
    }

    /// <summary>LayerNorm gains and biases and linear biases: one-dimensional, except the class embedding.</summary>
    private static bool IsNormOrBias(ClipWeight spec) => spec.Shape.Length == 1 && spec.Name != ClipWeights.ClassEmbedding;

    private static float[] Filled(int length, float value)
    {
        var array = new float[length];
        Array.Fill(array, value);
        return array;
    }
}
