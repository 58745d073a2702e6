using Serving.Runtime.Models.Gemma3;

namespace Serving.Trainer.Model;

/// <summary>One trainable tensor: its weight name, values, gradient and AdamW moments.</summary>
/// <param name="decays">Whether AdamW's weight decay applies (matrices yes; norms, biases, temperatures no).</param>
public sealed class Parameter(string name, float[] value, bool decays)
{
    /// <summary>Matrices decay; norm weights (offsets around 1 + w) do not, as in most LLM recipes.</summary>
    public Parameter(WeightSpec spec, float[] value)
        : this(spec.Name, value, spec.Shape.Length == 2)
    {
    }

    public string Name { get; } = name;
    public float[] Value { get; } = value;
    public float[] Gradient { get; } = new float[value.Length];
    public float[] FirstMoment { get; } = new float[value.Length];
    public float[] SecondMoment { get; } = new float[value.Length];
    public bool Decays { get; } = decays;

    /// <summary>sqrt(Σ g²) over every gradient of <paramref name="parameters"/>, accumulated in float64.</summary>
    public static double GradientNorm(IEnumerable<Parameter> parameters)
    {
        double sum = 0;
        foreach (Parameter p in parameters)
        {
            foreach (float g in p.Gradient)
            {
                sum += (double)g * g;
            }
        }

        return Math.Sqrt(sum);
    }
}

/// <summary>Every parameter of a Gemma 3 decoder, in <see cref="Gemma3Weights.Specs"/> order.</summary>
public sealed class ParameterSet
{
    private readonly Dictionary<string, Parameter> _byName;

    private ParameterSet(Gemma3Config config, IReadOnlyList<Parameter> all)
    {
        Config = config;
        All = all;
        _byName = all.ToDictionary(p => p.Name);
    }

    public Gemma3Config Config { get; }
    public IReadOnlyList<Parameter> All { get; }

    public Parameter this[string name] => _byName[name];

    public long Count => All.Sum(p => (long)p.Value.Length);

    /// <summary>
    /// Seeded initial values: the builder's random matrices (N(0, 1/fan_in), embedding
    /// N(0, 0.02²)) and norm weights 0, so every (1 + w) starts at 1 as in Hugging Face.
    /// </summary>
    public static ParameterSet Initialize(Gemma3Config config, ulong seed) =>
        FromValues(config, spec => spec.Init == WeightInit.Norm ? new float[spec.ElementCount] : Gemma3Weights.Random(spec, seed));

    public static ParameterSet FromValues(Gemma3Config config, Func<WeightSpec, float[]> values)
    {
        config.Validate();
        var all = new List<Parameter>();
        foreach (WeightSpec spec in Gemma3Weights.Specs(config))
        {
            float[] value = values(spec);
            if (value.LongLength != spec.ElementCount)
            {
                throw new ArgumentException($"weight '{spec.Name}' has {value.LongLength} values, expected {spec.ElementCount}");
            }

            all.Add(new Parameter(spec, value));
        }

        return new ParameterSet(config, all);
    }

    public void ZeroGradients()
    {
        foreach (Parameter p in All)
        {
            Array.Clear(p.Gradient);
        }
    }

    /// <summary>sqrt(Σ g²) over every gradient, accumulated in float64.</summary>
    public double GradientNorm() => Parameter.GradientNorm(All);
}
