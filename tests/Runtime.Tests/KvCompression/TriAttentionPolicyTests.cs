using Serving.Runtime.KvCompression;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.KvCompression;

public sealed class TriAttentionPolicyTests
{
    private static readonly Gemma3Config Config = Gemma3Presets.Tiny;

    private static KvCalibration RandomCalibration(int seed)
    {
        var random = new Random(seed);
        int count = Config.NumHiddenLayers * Config.NumAttentionHeads * Config.HeadDim / 2;
        float[] Next(float scale) => Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * scale).ToArray();
        float[] re = Next(1), im = Next(1);
        // E|q| ≥ |E[q]| always holds for real statistics.
        float[] modulus = re.Select((r, i) => MathF.Sqrt(r * r + im[i] * im[i]) + (float)random.NextDouble()).ToArray();
        return new KvCalibration(Config.NumHiddenLayers, Config.NumAttentionHeads, Config.HeadDim, 1000, re, im, modulus);
    }

    private static float[] RandomKey(Random random) => Enumerable.Range(0, Config.HeadDim).Select(_ => (float)(random.NextDouble() * 4 - 2)).ToArray();

    /// <summary>
    /// The mean over δ of the RoPE logit between the query centre, rotated to position t + δ the
    /// way the graph rotates queries (rotate-half), and the post-RoPE key, plus the spread term.
    /// </summary>
    private static double Direct(KvCalibration calibration, int layer, int head, float[] key, int length)
    {
        int bands = Config.HeadDim / 2;
        double theta = Config.RopeBase(layer), logits = 0;
        for (int i = 0; i < TriAttentionPolicy.NumOffsets; i++)
        {
            double position = length + Math.Pow(2, i);
            for (int f = 0; f < bands; f++)
            {
                double angle = position * Math.Pow(theta, -2.0 * f / Config.HeadDim);
                double x1 = calibration.MeanRe(layer, head)[f], x2 = calibration.MeanIm(layer, head)[f];
                double rotated1 = x1 * Math.Cos(angle) - x2 * Math.Sin(angle);
                double rotated2 = x2 * Math.Cos(angle) + x1 * Math.Sin(angle);
                logits += rotated1 * key[f] + rotated2 * key[f + bands];
            }
        }

        double spread = 0;
        for (int f = 0; f < bands; f++)
        {
            double re = calibration.MeanRe(layer, head)[f], im = calibration.MeanIm(layer, head)[f];
            spread += (calibration.MeanModulus(layer, head)[f] - Math.Sqrt(re * re + im * im)) * Math.Sqrt(key[f] * key[f] + key[f + bands] * key[f + bands]);
        }

        return logits / TriAttentionPolicy.NumOffsets + spread;
    }

    [Theory]
    [InlineData(1, 0, 0, 5)]
    [InlineData(1, 3, 2, 700)]
    [InlineData(3, 1, 1, 12345)]
    public void TheScoreEqualsTheRopeLogitOfTheQueryCentreComputedDirectly(int layer, int head, int seed, int length)
    {
        KvCalibration calibration = RandomCalibration(seed);
        var policy = new TriAttentionPolicy(calibration, Config);
        var random = new Random(seed + 1);
        for (int trial = 0; trial < 5; trial++)
        {
            float[] key = RandomKey(random);
            double expected = Direct(calibration, layer, head, key, length);
            Assert.Equal(expected, policy.RawScore(layer, head, key, length), Math.Max(1e-4, Math.Abs(expected) * 1e-4));
        }
    }

    [Fact]
    public void ScoresAreTheMaxOverTheKvHeadsQueryHeadsOfZScores()
    {
        KvCalibration calibration = RandomCalibration(4);
        var policy = new TriAttentionPolicy(calibration, Config);
        var random = new Random(9);
        const int slots = 11, layer = 1, kvHead = 1, length = 40;
        float[][] keys = Enumerable.Range(0, slots).Select(_ => RandomKey(random)).ToArray();
        int[] positions = Enumerable.Range(0, slots).ToArray();
        var scores = new float[slots];
        policy.Score(new KvHeadKeys(layer, kvHead, keys.SelectMany(k => k).ToArray(), Config.HeadDim, positions, length), scores);

        var expected = Enumerable.Repeat(double.NegativeInfinity, slots).ToArray();
        for (int head = 2; head < 4; head++)
        {
            double[] raw = keys.Select(key => (double)policy.RawScore(layer, head, key, length)).ToArray();
            double mean = raw.Average(), std = Math.Sqrt(raw.Select(x => (x - mean) * (x - mean)).Average());
            for (int s = 0; s < slots; s++)
            {
                expected[s] = Math.Max(expected[s], (raw[s] - mean) / std);
            }
        }

        for (int s = 0; s < slots; s++)
        {
            Assert.Equal(expected[s], scores[s], 1e-4);
        }
    }

    [Fact]
    public void ACalibrationForAnotherShapeIsRefused()
    {
        KvCalibration calibration = RandomCalibration(1);
        var error = Assert.Throws<InvalidDataException>(() => new TriAttentionPolicy(calibration, Config with { HeadDim = 32 }));
        Assert.Contains("calibrate-kv", error.Message);
    }
}
