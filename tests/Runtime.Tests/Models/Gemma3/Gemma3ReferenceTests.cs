using System.Numerics;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

public class Gemma3ReferenceTests
{
    private static readonly double Sqrt2 = Math.Sqrt(2.0);

    [Fact]
    public void ShiftingFirstPosition_LeavesLogitsUnchanged()
    {
        // 24 tokens > the 16-token window, so sliding and global layers both take part.
        var reference = new Gemma3Reference(Gemma3Presets.Tiny, Gemma3Reference.RandomWeights(Gemma3Presets.Tiny, seed: 1));
        int[] tokens = RandomTokens(24, Gemma3Presets.Tiny.VocabSize, seed: 2);

        double[][] atZero = reference.Forward(tokens);
        double[][] shifted = reference.Forward(tokens, firstPosition: 1000);

        Assert.True(MaxRelativeDifference(atZero, shifted) < 1e-9);
    }

    [Theory]
    [InlineData(4, false)] // 11 − 4 = 7 back: beyond 2 layers × (window − 1) = 6
    [InlineData(5, true)] // 6 back: reachable through one hop per layer
    public void SlidingLayers_IgnoreTokensBeyondTheirReceptiveField(int changedIndex, bool shouldChange)
    {
        // SlidingWindowPattern 3 > 2 layers: every layer slides, window 4.
        Gemma3Config config = Gemma3Presets.Tiny with { NumHiddenLayers = 2, SlidingWindowPattern = 3, SlidingWindow = 4 };
        Assert.All(Enumerable.Range(0, 2), i => Assert.Equal(AttentionKind.Sliding, config.LayerKind(i)));

        double change = LastLogitsChange(config, sequenceLength: 12, changedIndex);

        if (shouldChange)
        {
            Assert.True(change > 1e-6, $"last logits moved by only {change}");
        }
        else
        {
            Assert.Equal(0.0, change);
        }
    }

    [Fact]
    public void FullAttentionLayers_SeeTheFirstToken()
    {
        Gemma3Config config = Gemma3Presets.Tiny with { NumHiddenLayers = 2, SlidingWindowPattern = 1, SlidingWindow = 4 };

        double change = LastLogitsChange(config, sequenceLength: 12, changedIndex: 0);

        Assert.True(change > 1e-6, $"last logits moved by only {change}");
    }

    [Fact]
    public void SlidingLayers_UseTheLocalRopeBase()
    {
        // Within the window a sliding layer is a full layer; only the RoPE base tells them apart.
        Gemma3Config sliding = Gemma3Presets.Tiny with
        {
            NumHiddenLayers = 2, SlidingWindowPattern = 3, RopeLocalBaseFreq = 50, RopeTheta = 1e6,
        };
        Gemma3Config full = sliding with { SlidingWindowPattern = 1, RopeTheta = 50, RopeLocalBaseFreq = 1e6 };
        Dictionary<string, float[]> weights = Gemma3Reference.RandomWeights(sliding, seed: 12);
        int[] tokens = RandomTokens(sliding.SlidingWindow, sliding.VocabSize, seed: 13);

        double[][] expected = new Gemma3Reference(full, weights).Forward(tokens, firstPosition: 7);
        double[][] actual = new Gemma3Reference(sliding, weights).Forward(tokens, firstPosition: 7);

        Assert.True(MaxRelativeDifference(expected, actual) < 1e-12);
    }

    [Fact]
    public void GroupedQueryHeads_UseKvHeadOfTheirGroup()
    {
        // Expanding 2 KV heads to 4 (head j copies head j / 2) must not change anything
        // when query head h reads KV head h / (Nh / Nkv); h % Nkv would break it.
        Gemma3Config grouped = Gemma3Presets.Tiny;
        Gemma3Config expanded = grouped with { NumKeyValueHeads = grouped.NumAttentionHeads };
        Dictionary<string, float[]> weights = Gemma3Reference.RandomWeights(grouped, seed: 3);
        var expandedWeights = new Dictionary<string, float[]>(weights);
        for (int layer = 0; layer < grouped.NumHiddenLayers; layer++)
        {
            foreach (string proj in new[] { "k_proj", "v_proj" })
            {
                string name = $"model.layers.{layer}.self_attn.{proj}.weight";
                expandedWeights[name] = RepeatKvHeads(weights[name], grouped);
            }
        }

        int[] tokens = RandomTokens(20, grouped.VocabSize, seed: 4);
        double[][] expected = new Gemma3Reference(grouped, weights).Forward(tokens);
        double[][] actual = new Gemma3Reference(expanded, expandedWeights).Forward(tokens);

        Assert.True(MaxRelativeDifference(expected, actual) < 1e-12);
    }

    [Fact]
    public void Rope_ScoreDependsOnRelativeAngleOnly()
    {
        const int headDim = 16;
        const double ropeBase = 10_000.0;
        var random = new Random(5);
        double[] q = RandomVector(random, headDim), k = RandomVector(random, headDim);
        double[] rotatedQ = (double[])q.Clone(), rotatedK = (double[])k.Clone();
        Gemma3ReferenceMath.ApplyRope(rotatedQ, 37, ropeBase);
        Gemma3ReferenceMath.ApplyRope(rotatedK, 5, ropeBase);

        // Band f as the complex number x[f] + i·x[f + D/2]: score = Σ Re(q_f · conj(k_f) · e^{iω_f(37 − 5)}).
        double expected = 0;
        for (int f = 0; f < headDim / 2; f++)
        {
            var qf = new Complex(q[f], q[f + headDim / 2]);
            var kf = new Complex(k[f], k[f + headDim / 2]);
            double omega = Math.Pow(ropeBase, -2.0 * f / headDim);
            expected += (qf * Complex.Conjugate(kf) * Complex.FromPolarCoordinates(1, omega * 32)).Real;
        }

        Assert.Equal(expected, Gemma3ReferenceMath.Dot(rotatedQ, rotatedK), 12);
    }

    [Fact]
    public void Rope_RotatesHalvesNotInterleavedPairs()
    {
        double[] x = [1, 0, 0, 0];

        Gemma3ReferenceMath.ApplyRope(x, position: 1, ropeBase: 100);

        // Band 0 pairs x[0] with x[2] and turns by 1 · 100^0 = 1 radian.
        Assert.Equal(Math.Cos(1), x[0], 15);
        Assert.Equal(0, x[1], 15);
        Assert.Equal(Math.Sin(1), x[2], 15);
        Assert.Equal(0, x[3], 15);
        Assert.Equal(Math.Pow(100, -0.5), Gemma3ReferenceMath.InverseFrequency(1, 4, 100), 15);
    }

    [Theory]
    [InlineData(0f, 1.0)]
    [InlineData(1f, 2.0)] // Gemma scales by (1 + w), not w
    public void RmsNorm_ScalesToUnitRmsTimesOnePlusWeight(float weight, double onePlusWeight)
    {
        const double eps = 1e-6;
        double[] x = RandomVector(new Random(6), 64).Select(v => 37.0 * v).ToArray();
        double meanSquare = x.Sum(v => v * v) / x.Length;

        Gemma3ReferenceMath.RmsNorm(x, Enumerable.Repeat(weight, 64).ToArray(), eps);

        // eps sits inside the root: sqrt(ms / (ms + eps)) is 1 − 1e-9 here, not 1.
        double expected = onePlusWeight * Math.Sqrt(meanSquare / (meanSquare + eps));
        Assert.Equal(expected, Math.Sqrt(x.Sum(v => v * v) / x.Length), 13);
    }

    [Fact]
    public void OneToken_MatchesHandDerivation()
    {
        Dictionary<string, float[]> w = ZeroWeights(HandConfig);
        w["model.embed_tokens.weight"] = [3, 4, 0, 1];
        w["model.layers.0.self_attn.v_proj.weight"] = [1, 0, 0, 1];
        w["model.layers.0.self_attn.o_proj.weight"] = [0, 1, 1, 0]; // swaps the two features
        w["model.layers.0.post_attention_layernorm.weight"] = [1, 0];
        w["model.layers.0.mlp.gate_proj.weight"] = [1, 0, 0, -1];
        w["model.layers.0.mlp.up_proj.weight"] = [1, 0, 0, 1];
        w["model.layers.0.mlp.down_proj.weight"] = [1, 0, 0, 1];

        double[] logits = new Gemma3Reference(HandConfig, w).Forward([0])[0];

        // h = [3, 4]·√2 (RMS 5); a = [0.6, 0.8]·√2; one key, so attention returns v = a;
        // o_proj swaps: [0.8, 0.6]·√2 (RMS 1); (1 + w) = [2, 1] → h = [4.6, 4.6]·√2.
        // pre-FF norm → [1, 1]; gate [1, −1], up [1, 1] → m = [gelu(1), gelu(−1)], then unit RMS.
        const double gelu1 = 0.8411919906082768, geluMinus1 = -0.15880800939172324;
        double mlpRms = Math.Sqrt((gelu1 * gelu1 + geluMinus1 * geluMinus1) / 2);
        double[] h = [4.6 * Sqrt2 + gelu1 / mlpRms, 4.6 * Sqrt2 + geluMinus1 / mlpRms];
        double finalRms = Math.Sqrt((h[0] * h[0] + h[1] * h[1]) / 2);

        Assert.Equal((3 * h[0] + 4 * h[1]) / finalRms, logits[0], 9);
        Assert.Equal(h[1] / finalRms, logits[1], 9);
    }

    [Fact]
    public void TwoTokens_AttentionMatchesHandDerivation()
    {
        Dictionary<string, float[]> w = ZeroWeights(HandConfig); // down_proj = 0: the MLP adds nothing
        w["model.embed_tokens.weight"] = [3, 4, 4, -3];
        foreach (string proj in new[] { "q_proj", "k_proj", "v_proj", "o_proj" })
        {
            w[$"model.layers.0.self_attn.{proj}.weight"] = [1, 0, 0, 1];
        }

        double[][] logits = new Gemma3Reference(HandConfig, w).Forward([0, 1]);

        // a0 = [0.6, 0.8]·√2, a1 = [0.8, −0.6]·√2, both already unit RMS, so q/k norms keep them.
        // At position 1 RoPE turns by 1 rad (D = 2: one band, inv_freq 1). As complex numbers
        // q1·conj(k0) = 2(0.8 − 0.6i)(0.6 − 0.8i)·e^{i} = −2i·e^{i} → score 2 sin 1; q1·k1 = 2.
        // Scale 4^(−1/2) = 0.5.
        double p0 = Math.Exp(Math.Sin(1)) / (Math.Exp(Math.Sin(1)) + Math.Exp(1));
        double[] c = [(p0 * 0.6 + (1 - p0) * 0.8) * Sqrt2, (p0 * 0.8 - (1 - p0) * 0.6) * Sqrt2];
        double cRms = Math.Sqrt((c[0] * c[0] + c[1] * c[1]) / 2);
        double[] h = [4 * Sqrt2 + c[0] / cRms, -3 * Sqrt2 + c[1] / cRms];
        double hRms = Math.Sqrt((h[0] * h[0] + h[1] * h[1]) / 2);

        // Position 0 attends only to itself: h0 = [3.6, 4.8]·√2 → normed [0.6, 0.8]·√2.
        Assert.Equal(5 * Sqrt2, logits[0][0], 9);
        Assert.Equal(0, logits[0][1], 9);
        Assert.Equal((3 * h[0] + 4 * h[1]) / hRms, logits[1][0], 9);
        Assert.Equal((4 * h[0] - 3 * h[1]) / hRms, logits[1][1], 9);
    }

    [Fact]
    public void MissingWeight_IsNamed()
    {
        Dictionary<string, float[]> weights = Gemma3Reference.RandomWeights(Gemma3Presets.Tiny, seed: 7);
        weights.Remove("model.layers.2.self_attn.k_norm.weight");

        var error = Assert.Throws<ArgumentException>(() => new Gemma3Reference(Gemma3Presets.Tiny, weights));
        Assert.Contains("model.layers.2.self_attn.k_norm.weight", error.Message);
    }

    [Fact]
    public void WrongLength_IsNamedWithExpectedShape()
    {
        Dictionary<string, float[]> weights = Gemma3Reference.RandomWeights(Gemma3Presets.Tiny, seed: 8);
        weights["model.layers.1.mlp.up_proj.weight"] = new float[10];

        var error = Assert.Throws<ArgumentException>(() => new Gemma3Reference(Gemma3Presets.Tiny, weights));
        Assert.Contains("model.layers.1.mlp.up_proj.weight", error.Message);
        Assert.Contains("[64, 128]", error.Message);
    }

    [Fact]
    public void RandomWeights_HaveTheRequestedSpread()
    {
        Dictionary<string, float[]> weights = Gemma3Reference.RandomWeights(Gemma3Presets.Tiny, seed: 9);

        // Sample sizes 8192, 65536 and 64: the standard error of a std is about 1/sqrt(2n).
        Assert.InRange(Std(weights["model.layers.0.mlp.down_proj.weight"]) * Math.Sqrt(128), 0.95, 1.05); // fan_in 128
        Assert.InRange(Std(weights["model.embed_tokens.weight"]) * Math.Sqrt(64), 0.98, 1.02); // 1/sqrt(H)
        Assert.InRange(Std(weights["model.layers.0.input_layernorm.weight"]) / 0.1, 0.6, 1.4);
    }

    /// <summary>H = 2, one layer, one head of dimension 2, intermediate 2, vocabulary 2, global attention.</summary>
    private static Gemma3Config HandConfig { get; } = new()
    {
        VocabSize = 2,
        HiddenSize = 2,
        IntermediateSize = 2,
        NumHiddenLayers = 1,
        NumAttentionHeads = 1,
        NumKeyValueHeads = 1,
        HeadDim = 2,
        SlidingWindow = 2,
        SlidingWindowPattern = 1,
        QueryPreAttnScalar = 4,
        RmsNormEps = 1e-12, // keeps the hand-derived values exact to ~1e-12
    };

    private static Dictionary<string, float[]> ZeroWeights(Gemma3Config config) =>
        Gemma3Reference.WeightShapes(config).ToDictionary(s => s.Name, s => new float[s.Shape.Aggregate(1, (a, b) => a * b)]);

    private static double LastLogitsChange(Gemma3Config config, int sequenceLength, int changedIndex)
    {
        var reference = new Gemma3Reference(config, Gemma3Reference.RandomWeights(config, seed: 10));
        int[] tokens = RandomTokens(sequenceLength, config.VocabSize, seed: 11);
        double[] before = reference.Forward(tokens)[^1];
        tokens[changedIndex] = (tokens[changedIndex] + 1) % config.VocabSize;
        double[] after = reference.Forward(tokens)[^1];
        return before.Zip(after, (a, b) => Math.Abs(a - b)).Max();
    }

    private static float[] RepeatKvHeads(float[] weight, Gemma3Config config)
    {
        int h = config.HiddenSize, d = config.HeadDim, numKv = config.NumKeyValueHeads, numHeads = config.NumAttentionHeads;
        var expanded = new float[h * numHeads * d];
        for (int i = 0; i < h; i++)
        {
            for (int head = 0; head < numHeads; head++)
            {
                int source = head / (numHeads / numKv);
                Array.Copy(weight, (i * numKv + source) * d, expanded, (i * numHeads + head) * d, d);
            }
        }

        return expanded;
    }

    private static int[] RandomTokens(int count, int vocabSize, int seed)
    {
        var random = new Random(seed);
        return Enumerable.Range(0, count).Select(_ => random.Next(vocabSize)).ToArray();
    }

    private static double[] RandomVector(Random random, int length) =>
        Enumerable.Range(0, length).Select(_ => random.NextDouble() * 2 - 1).ToArray();

    private static double MaxRelativeDifference(double[][] expected, double[][] actual)
    {
        double scale = expected.SelectMany(row => row).Max(Math.Abs);
        double difference = expected.Zip(actual, (e, a) => e.Zip(a, (x, y) => Math.Abs(x - y)).Max()).Max();
        return difference / scale;
    }

    private static double Std(float[] values)
    {
        double mean = values.Average(v => (double)v);
        return Math.Sqrt(values.Average(v => (v - mean) * (v - mean)));
    }
}
