using System.Diagnostics;
using System.Numerics.Tensors;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Models;

namespace Serving.Runtime.KvCompression;

/// <summary>One policy at one budget over every prompt (<c>none</c>, budget 0: full attention, the reference).</summary>
/// <param name="Top1Agreement">Steps whose most likely next token equals full attention's.</param>
/// <param name="MeanKl">Mean KL(full ‖ compressed) of the next-token distributions, in nats.</param>
/// <param name="KvBytesPeak">The largest cache (every layer) over the prompts.</param>
/// <param name="GlobalKvBytesPeak">The same for the global-attention layers only, the layers compression bounds.</param>
/// <param name="DecodeTokensPerSecond">Median over prompts of the teacher-forced decode steps' rate, compressions included.</param>
public sealed record KvEvaluationRow(string Policy, int Budget, int Steps, double Top1Agreement, double MeanKl, int KvTokensPeak,
    long KvBytesPeak, long GlobalKvBytesPeak, double DecodeTokensPerSecond);

/// <summary>
/// <c>serving eval-kv</c>: for each prompt, full attention generates <c>gen</c> greedy tokens;
/// each policy and budget is then teacher-forced on that continuation (fed the same tokens), and
/// its next-token distribution at every step is compared with full attention's.
/// The template options of <see cref="Run"/> give the other settings (β, protection).
/// </summary>
public static class KvEvaluation
{
    public static List<KvEvaluationRow> Run(DecoderModel model, IReadOnlyList<int[]> prompts, IReadOnlyList<string> policies, IReadOnlyList<int> budgets,
        int gen, KvCompressionOptions? template = null, IProgress<(long Done, long Total)>? progress = null)
    {
        template ??= new KvCompressionOptions();
        var cases = new List<KvCompressionOptions> { new() };
        foreach (string policy in policies.Where(policy => policy != KvCompressionOptions.None))
        {
            cases.AddRange(budgets.Select(budget => template with { Policy = policy, Budget = budget }));
        }

        var totals = cases.Select(_ => new Totals()).ToArray();
        long done = 0, total = (long)prompts.Count * cases.Count;
        foreach (int[] prompt in prompts)
        {
            Reference reference = Reference.Generate(model, prompt, gen, totals[0]);
            progress?.Report((++done, total));
            for (int c = 1; c < cases.Count; c++)
            {
                TeacherForce(model, prompt, reference, cases[c], totals[c]);
                progress?.Report((++done, total));
            }
        }

        return [.. cases.Select((options, c) => totals[c].Row(options))];
    }

    private static void TeacherForce(DecoderModel model, int[] prompt, Reference reference, KvCompressionOptions options, Totals totals)
    {
        using var stepper = new SequenceStepper(model, options);
        var logProbabilities = new float[model.Config.VocabSize];
        var clock = new Stopwatch();
        stepper.Prefill(prompt);
        for (int step = 0; step < reference.Tokens.Length; step++)
        {
            ReadOnlySpan<float> logits = stepper.Logits;
            totals.Agree += SequenceSampler.ArgMax(logits) == reference.Tokens[step] ? 1 : 0;
            LogSoftmax(logits, logProbabilities);
            totals.Kl += KlDivergence(reference.LogProbabilities[step], logProbabilities);
            totals.Steps++;
            if (step + 1 < reference.Tokens.Length)
            {
                clock.Start();
                stepper.Step(reference.Tokens[step]);
                clock.Stop();
            }
        }

        totals.Add(stepper, model, reference.Tokens.Length - 1, clock.Elapsed.TotalSeconds);
    }

    /// <summary>Full attention's greedy continuation and its log-probabilities at every step.</summary>
    private sealed record Reference(int[] Tokens, float[][] LogProbabilities)
    {
        public static Reference Generate(DecoderModel model, int[] prompt, int gen, Totals totals)
        {
            using var stepper = new SequenceStepper(model);
            var tokens = new int[gen];
            var logProbabilities = new float[gen][];
            var clock = new Stopwatch();
            stepper.Prefill(prompt);
            for (int step = 0; step < gen; step++)
            {
                tokens[step] = SequenceSampler.ArgMax(stepper.Logits);
                logProbabilities[step] = new float[model.Config.VocabSize];
                LogSoftmax(stepper.Logits, logProbabilities[step]);
                totals.Steps++;
                totals.Agree++;
                if (step + 1 < gen)
                {
                    clock.Start();
                    stepper.Step(tokens[step]);
                    clock.Stop();
                }
            }

            totals.Add(stepper, model, gen - 1, clock.Elapsed.TotalSeconds);
            return new Reference(tokens, logProbabilities);
        }
    }

    private static void LogSoftmax(ReadOnlySpan<float> logits, Span<float> result)
    {
        float max = TensorPrimitives.Max(logits);
        double sum = 0;
        foreach (float logit in logits)
        {
            sum += Math.Exp(logit - max);
        }

        TensorPrimitives.Subtract(logits, max + (float)Math.Log(sum), result);
    }

    /// <summary>KL(p ‖ q) = Σ p (log p − log q), from log-probabilities.</summary>
    private static double KlDivergence(ReadOnlySpan<float> logP, ReadOnlySpan<float> logQ)
    {
        double kl = 0;
        for (int i = 0; i < logP.Length; i++)
        {
            double p = Math.Exp(logP[i]);
            kl += p > 0 ? p * (logP[i] - logQ[i]) : 0;
        }

        return Math.Max(kl, 0);
    }

    private sealed class Totals
    {
        private readonly List<double> _rates = [];

        public long Steps { get; set; }
        public long Agree { get; set; }
        public double Kl { get; set; }
        private int _tokensPeak;
        private long _bytesPeak, _globalBytesPeak;

        public void Add(SequenceStepper stepper, DecoderModel model, int decodeSteps, double seconds)
        {
            var layout = new Generation.Kv.KvLayout(model.Signature, model.Config.SlidingWindow);
            int globalLayers = layout.Layers - layout.NumTrimmedLayers;
            _tokensPeak = Math.Max(_tokensPeak, stepper.KvTokensPeak);
            _bytesPeak = Math.Max(_bytesPeak, stepper.KvBytesPeak);
            _globalBytesPeak = Math.Max(_globalBytesPeak, 2 * layout.SlotBytes * globalLayers * stepper.KvTokensPeak);
            if (decodeSteps > 0 && seconds > 0)
            {
                _rates.Add(decodeSteps / seconds);
            }
        }

        public KvEvaluationRow Row(KvCompressionOptions options)
        {
            _rates.Sort();
            double median = _rates.Count == 0 ? 0 : _rates.Count % 2 == 1 ? _rates[_rates.Count / 2] : (_rates[_rates.Count / 2 - 1] + _rates[_rates.Count / 2]) / 2;
            return new KvEvaluationRow(options.Policy, options.IsEnabled ? options.Budget : 0, (int)Steps, Steps == 0 ? 0 : (double)Agree / Steps,
                Steps == 0 ? 0 : Kl / Steps, _tokensPeak, _bytesPeak, _globalBytesPeak, median);
        }
    }
}
