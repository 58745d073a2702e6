using System.Numerics.Tensors;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Quantization;

/// <summary>
/// Activation-aware weight quantization (AWQ; Lin et al., MLSys 2024): the input channels that
/// carry large activations matter most, so before rounding, each weight row k (input channel) is
/// multiplied by sₖ = mean|xₖ|^α and the activation divided by sₖ, which keeps the product exact in
/// full precision and gives the salient channels finer quantization steps. α is searched per group
/// of MatMuls that read the same activation, on calibration text, minimising
/// ‖X·W − (X/s)·Q(s·W)‖² over sampled tokens (α = 0 is plain round-to-nearest, so the search never
/// does worse than RTN on its own objective). The 1/s is folded where the activation is made:
/// into the RMSNorm weight in front of q/k/v and of gate/up (Gemma's <c>(1 + w)</c> or a plain
/// <c>w</c>), and into up_proj's output columns in front of down_proj. o_proj keeps plain RTN: its
/// input comes from attention over grouped KV heads, where one channel scale per KV head would have
/// to serve several query heads (AutoAWQ skips it for grouped-query attention too).
/// </summary>
public static class ActivationAwareScaling
{
    public const int GridPoints = 20;

    /// <summary>Tokens whose activations the output-error search multiplies out (mean |x| uses all).</summary>
    public const int SampleRows = 128;

    /// <summary>What the search found: per weight, the row multipliers and column divisors; per norm weight, its new values.</summary>
    public sealed record Scales(
        IReadOnlyDictionary<string, float[]> RowMultipliers,
        IReadOnlyDictionary<string, float[]> ColumnDivisors,
        IReadOnlyDictionary<string, float[]> NormWeights,
        IReadOnlyList<GroupResult> Groups)
    {
        /// <summary><paramref name="weight"/> (<c>[k, n]</c>) with its scales applied, in place.</summary>
        public void Apply(string name, float[] weight, int k, int n)
        {
            if (RowMultipliers.TryGetValue(name, out float[]? rows))
            {
                for (int i = 0; i < k; i++)
                {
                    TensorPrimitives.Multiply(weight.AsSpan(i * n, n), rows[i], weight.AsSpan(i * n, n));
                }
            }

            if (ColumnDivisors.TryGetValue(name, out float[]? columns))
            {
                for (int i = 0; i < k; i++)
                {
                    TensorPrimitives.Divide(weight.AsSpan(i * n, n), columns, weight.AsSpan(i * n, n));
                }
            }
        }
    }

    /// <summary>One group of MatMuls sharing an input: the α chosen and the output error before (RTN) and after.</summary>
    public sealed record GroupResult(string Input, IReadOnlyList<string> Weights, string FoldedInto, float Alpha, double RtnError, double AwqError);

    /// <summary>Runs the model on <paramref name="tokens"/> and searches the scales of every group that has a place to fold them.</summary>
    public static Scales Search(string onnxPath, ModelProto model, IReadOnlyList<SparseTarget> linear, IReadOnlyList<int> tokens,
        BlockSpec spec, int threads = 0, IProgress<(long Done, long Total)>? progress = null)
    {
        if (tokens.Count == 0)
        {
            throw new ArgumentException("the calibration text has no tokens", nameof(tokens));
        }

        string directory = Path.GetDirectoryName(onnxPath)!;
        var producers = new Dictionary<string, NodeProto>();
        foreach (NodeProto node in model.Graph.Node)
        {
            foreach (string output in node.Output)
            {
                producers[output] = node;
            }
        }

        var groups = linear.GroupBy(target => target.Input)
            .Select(group => (Targets: group.ToList(), Fold: FoldSite(model.Graph, producers, group.Key, linear)))
            .Where(group => group.Fold is not null)
            .ToList();
        var statistics = Collect(onnxPath, model, groups.Select(group => group.Targets[0].Input), tokens, threads);

        var rowMultipliers = new Dictionary<string, float[]>();
        var columnDivisors = new Dictionary<string, float[]>();
        var normWeights = new Dictionary<string, float[]>();
        var results = new List<GroupResult>();
        long done = 0;
        foreach (var (targets, fold) in groups)
        {
            ActivationStatistics stats = statistics[targets[0].Input];
            var weights = targets.Select(t => (t.Weight.Name, Values: TensorData.ReadFloats(t.Weight, directory), t.K, t.N)).ToList();
            var (alpha, scales, rtn, best) = SearchAlpha(stats, weights, spec);
            foreach (SparseTarget target in targets)
            {
                rowMultipliers[target.Weight.Name] = scales;
            }

            switch (fold!)
            {
                case NormFold norm:
                    float[] gamma = TensorData.ReadFloats(norm.Weight, directory);
                    normWeights[norm.Weight.Name] = [.. gamma.Select((w, i) => norm.PlusOne ? ((1 + w) / scales[i]) - 1 : w / scales[i])];
                    break;
                case ColumnFold column:
                    columnDivisors[column.Weight] = scales;
                    break;
            }

            results.Add(new GroupResult(targets[0].Input, [.. targets.Select(t => t.Weight.Name)], fold!.Describe(), alpha, rtn, best));
            progress?.Report((++done, groups.Count));
        }

        return new Scales(rowMultipliers, columnDivisors, normWeights, results);
    }

    private abstract record Fold
    {
        public abstract string Describe();
    }

    /// <summary>An RMSNorm's weight, as <c>x̂ · (1 + w)</c> (Gemma) or <c>x̂ · w</c>.</summary>
    private sealed record NormFold(TensorProto Weight, bool PlusOne) : Fold
    {
        public override string Describe() => Weight.Name;
    }

    /// <summary>The output columns of a MatMul whose output is one factor of the product read (up_proj in a gated MLP).</summary>
    private sealed record ColumnFold(string Weight) : Fold
    {
        public override string Describe() => Weight + " (columns)";
    }

    /// <summary>Where <paramref name="input"/>'s 1/s can go, or null to keep the group at plain RTN.</summary>
    private static Fold? FoldSite(GraphProto graph, Dictionary<string, NodeProto> producers, string input, IReadOnlyList<SparseTarget> linear)
    {
        if (!producers.TryGetValue(input, out NodeProto? mul) || mul.OpType != "Mul" || mul.Input.Count != 2 || Readers(graph, input).Any(node => !linear.Any(t => t.Node == node)))
        {
            return null;
        }

        foreach (string factor in mul.Input)
        {
            // Gemma: Mul(normalized, Add(1, w)).
            if (producers.TryGetValue(factor, out NodeProto? add) && add.OpType == "Add" && add.Input.Count == 2
                && add.Input.Select(name => GraphEdits.FindInitializer(graph, name)).ToList() is var tensors
                && tensors.Count(t => t is not null) == 2
                && tensors.FirstOrDefault(t => t is not null && TensorData.ElementCount(t) == 1 && ScalarIs(t, 1f)) is { } one
                && tensors.First(t => t != one) is { } weight && weight.Dims.Count == 1
                && Readers(graph, weight.Name).Count == 1 && Readers(graph, factor).Count == 1)
            {
                return new NormFold(weight, PlusOne: true);
            }

            // A plain norm weight read by this Mul only.
            if (GraphEdits.FindInitializer(graph, factor) is { Dims.Count: 1 } plain && Readers(graph, factor).Count == 1 && IsNormalized(producers, mul.Input.First(i => i != factor)))
            {
                return new NormFold(plain, PlusOne: false);
            }

            // Gated MLP: Mul(act(gate), up) with up a linear target read only here.
            if (linear.FirstOrDefault(t => t.Node.Output[0] == factor) is { } up && Readers(graph, factor).Count == 1)
            {
                return new ColumnFold(up.Weight.Name);
            }
        }

        return null;
    }

    /// <summary>x / rms(x): a Div by a Sqrt (our export) or a Mul by a Reciprocal/Sqrt chain.</summary>
    private static bool IsNormalized(Dictionary<string, NodeProto> producers, string value) =>
        producers.TryGetValue(value, out NodeProto? node) && node.OpType is "Div" or "Mul"
        && node.Input.Any(input => producers.TryGetValue(input, out NodeProto? p) && p.OpType is "Sqrt" or "Reciprocal");

    private static List<NodeProto> Readers(GraphProto graph, string value) => [.. graph.Node.Where(node => node.Input.Contains(value))];

    private static bool ScalarIs(TensorProto tensor, float expected) =>
        tensor.DataType == (int)TensorProto.Types.DataType.Float && tensor.DataLocation != TensorProto.Types.DataLocation.External
        && (tensor.FloatData.Count == 1 ? tensor.FloatData[0] : BitConverter.ToSingle(tensor.RawData.Span)) == expected;

    /// <summary>Mean |x| per channel over every token, and up to <see cref="SampleRows"/> evenly spaced token rows.</summary>
    private sealed class ActivationStatistics(int channels, int stride)
    {
        public double[] AbsSums { get; } = new double[channels];

        public long Rows { get; set; }

        public List<float[]> Samples { get; } = [];

        public void Add(ReadOnlySpan<float> data)
        {
            int channels = AbsSums.Length;
            for (int row = 0; row < data.Length / channels; row++)
            {
                ReadOnlySpan<float> x = data.Slice(row * channels, channels);
                for (int j = 0; j < channels; j++)
                {
                    AbsSums[j] += MathF.Abs(x[j]);
                }

                if (Rows++ % stride == 0 && Samples.Count < SampleRows)
                {
                    Samples.Add(x.ToArray());
                }
            }
        }

        public float[] MeanAbs() => [.. AbsSums.Select(sum => (float)(sum / Math.Max(1, Rows)))];
    }

    private static Dictionary<string, ActivationStatistics> Collect(string onnxPath, ModelProto model, IEnumerable<string> inputs, IReadOnlyList<int> tokens, int threads)
    {
        using var decoder = new TappedDecoder(onnxPath, model, inputs, threads);
        int stride = Math.Max(1, tokens.Count / SampleRows);
        var statistics = new Dictionary<string, ActivationStatistics>();
        for (int start = 0; start < tokens.Count; start += WandaCalibration.ChunkTokens)
        {
            int count = Math.Min(WandaCalibration.ChunkTokens, tokens.Count - start);
            decoder.Run([.. tokens.Skip(start).Take(count).Select(id => (long)id)], (tap, value) => Accumulate(statistics, tap, value, stride));
        }

        return statistics;
    }

    private static void Accumulate(Dictionary<string, ActivationStatistics> statistics, string tap, OrtValue value, int stride)
    {
        int channels = checked((int)value.GetTensorTypeAndShape().Shape[^1]);
        if (!statistics.TryGetValue(tap, out ActivationStatistics? stats))
        {
            statistics[tap] = stats = new ActivationStatistics(channels, stride);
        }

        stats.Add(value.GetTensorDataAsSpan<float>());
    }

    /// <summary>The α of <c>s = mean|x|^α</c> (normalised to geometric mean ≈ 1) with the least output error over the group.</summary>
    private static (float Alpha, float[] Scales, double RtnError, double BestError) SearchAlpha(
        ActivationStatistics stats, List<(string Name, float[] Values, int K, int N)> weights, BlockSpec spec)
    {
        float[] meanAbs = stats.MeanAbs();
        float[][] samples = [.. stats.Samples];
        var transposed = weights.Select(w => BlockQuantizer.Transpose(w.Values, w.K, w.N)).ToList();
        float bestAlpha = 0;
        float[] bestScales = [.. Enumerable.Repeat(1f, meanAbs.Length)];
        double rtn = double.NaN, best = double.PositiveInfinity;
        for (int step = 0; step <= GridPoints; step++)
        {
            float alpha = (float)step / GridPoints;
            float[] scales = ScalesFor(meanAbs, alpha);
            double error = 0;
            for (int w = 0; w < weights.Count; w++)
            {
                error += OutputError(samples, weights[w].Values, transposed[w], weights[w].K, weights[w].N, scales, spec);
            }

            if (step == 0)
            {
                rtn = error;
            }

            if (error < best)
            {
                (best, bestAlpha, bestScales) = (error, alpha, scales);
            }
        }

        return (bestAlpha, bestScales, rtn, best);
    }

    internal static float[] ScalesFor(float[] meanAbs, float alpha)
    {
        var scales = new float[meanAbs.Length];
        for (int i = 0; i < scales.Length; i++)
        {
            scales[i] = MathF.Pow(MathF.Max(meanAbs[i], 1e-4f), alpha);
        }

        float normaliser = MathF.Sqrt(TensorPrimitives.Max(scales) * TensorPrimitives.Min(scales));
        TensorPrimitives.Divide(scales, normaliser, scales);
        return scales;
    }

    /// <summary>‖X·W − (X/s)·Q(s·W)‖² over the sampled rows X.</summary>
    private static double OutputError(float[][] samples, float[] weight, float[] transposed, int k, int n, float[] scales, BlockSpec spec)
    {
        var scaled = (float[])weight.Clone();
        for (int i = 0; i < k; i++)
        {
            TensorPrimitives.Multiply(scaled.AsSpan(i * n, n), scales[i], scaled.AsSpan(i * n, n));
        }

        // Q(s·W) as [n, k]; the weight it stands for is Q(s·W)/s; the difference from W, row per output column.
        float[] difference = BlockQuantizer.Dequantize(BlockQuantizer.QuantizeTransposed(scaled, k, n, spec));
        Parallel.For(0, n, column =>
        {
            Span<float> row = difference.AsSpan(column * k, k);
            TensorPrimitives.Divide(row, scales, row);
            TensorPrimitives.Subtract(transposed.AsSpan(column * k, k), row, row);
        });

        double[] partial = new double[samples.Length];
        Parallel.For(0, samples.Length, r =>
        {
            double sum = 0;
            for (int column = 0; column < n; column++)
            {
                float y = TensorPrimitives.Dot(samples[r], difference.AsSpan(column * k, k));
                sum += (double)y * y;
            }

            partial[r] = sum;
        });
        return partial.Sum();
    }
}
