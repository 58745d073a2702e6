using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Telemetry;

namespace Serving.Runtime.Generation;

/// <summary>
/// The step's last stage: samples each sequence the plan samples, streams the text its token
/// completes, and finishes it on a stop token, a stop string or its token limit (through the
/// scheduler, which frees its blocks).
/// </summary>
internal sealed class OutputProcessor(Scheduler scheduler, IReadOnlySet<int> eosIds, EngineTelemetry telemetry, int vocabSize)
{
    private static readonly (float Logprob, TokenLogprob[]? Top) NoLogprob = (0, null);

    private float[]? _masked;
    private long _maskTicks;

    /// <summary>Seconds spent constraining outputs (read from other threads for telemetry).</summary>
    public double MaskSeconds => Interlocked.Read(ref _maskTicks) / (double)System.Diagnostics.Stopwatch.Frequency;

    /// <summary><paramref name="logits"/> where <paramref name="allowed"/> has the token's bit, −∞ elsewhere.</summary>
    internal static void Mask(ReadOnlySpan<float> logits, ulong[] allowed, Span<float> masked)
    {
        for (int word = 0; word < allowed.Length; word++)
        {
            int start = word * 64, count = Math.Min(64, logits.Length - start);
            ulong bits = allowed[word];
            if (bits == ulong.MaxValue && count == 64)
            {
                logits.Slice(start, 64).CopyTo(masked.Slice(start, 64));
                continue;
            }

            Span<float> target = masked.Slice(start, count);
            target.Fill(float.NegativeInfinity);
            while (bits != 0)
            {
                int bit = System.Numerics.BitOperations.TrailingZeroCount(bits);
                if (bit < count)
                {
                    target[bit] = logits[start + bit];
                }

                bits &= bits - 1;
            }
        }
    }

    /// <summary>Samples every chunk that samples, in plan order, from its row of <paramref name="logits"/>.</summary>
    public void Process(StepPlan plan, ReadOnlySpan<float> logits)
    {
        int row = 0, decoded = 0;
        foreach (ScheduledChunk chunk in plan.Chunks)
        {
            if (!chunk.Samples || chunk.Sequence.Status != SequenceStatus.Running)
            {
                row += chunk.Samples ? 1 : 0;
                continue;
            }

            bool first = chunk.Sequence.NumGenerated == 0;
            Accept(chunk.Sequence, logits.Slice(row++ * vocabSize, vocabSize), first);
            decoded += first ? 0 : 1;
        }

        if (decoded > 0)
        {
            telemetry.DecodeStep(decoded);
        }
    }

    private void Accept(Sequence sequence, ReadOnlySpan<float> logits, bool first)
    {
        float logprob = 0;
        int topCount = 0;
        long started = sequence.Constraint is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
        if (sequence.Constraint?.Allowed() is { } allowed)
        {
            // Tokens that would break the JSON get −∞ before penalties, temperature, top-k and top-p.
            _masked ??= new float[vocabSize];
            Mask(logits, allowed, _masked);
            logits = _masked;
        }

        long masked = sequence.Constraint is null ? 0 : System.Diagnostics.Stopwatch.GetTimestamp();
        int token = sequence.Request.Sampling.TopLogprobs is null
            ? sequence.Sampler.Sample(logits)
            : sequence.Sampler.Sample(logits, out logprob, sequence.TopLogprobs, out topCount);
        if (sequence.Constraint is { } constraint)
        {
            long sampled = System.Diagnostics.Stopwatch.GetTimestamp();
            constraint.Accept(token);
            Interlocked.Add(ref _maskTicks, (masked - started) + (System.Diagnostics.Stopwatch.GetTimestamp() - sampled));
        }
        sequence.Append(token);
        if (first)
        {
            telemetry.PrefillDone(sequence);
        }

        var logprobs = (logprob, sequence.TopLogprobs.Length > 0 ? sequence.TopLogprobs[..topCount] : null);
        bool isStopToken = (!sequence.Request.IgnoreEos && eosIds.Contains(token)) || sequence.Request.StopTokenIds.Contains(token);
        StopScan scan = sequence.Stop.Push(isStopToken ? "" : sequence.Detokenizer.Add(token));
        if (scan.Stopped)
        {
            Finish(sequence, FinishReason.Stop, scan.Emit, logprobs, token);
            return;
        }

        if (isStopToken || sequence.NumGenerated == sequence.Request.MaxTokens)
        {
            StopScan tail = sequence.Stop.Push(sequence.Detokenizer.Flush());
            string text = scan.Emit + tail.Emit + (tail.Stopped ? "" : sequence.Stop.Flush());
            Finish(sequence, isStopToken || tail.Stopped ? FinishReason.Stop : FinishReason.Length, text, logprobs, token);
            return;
        }

        sequence.Events.Writer.TryWrite(new GenerationEvent(token, scan.Emit, logprob, logprobs.Item2, null, default));
    }

    /// <summary>Ends a running sequence: its blocks back to the pool, its last event.</summary>
    public void Finish(Sequence sequence, FinishReason reason, string text = "", (float Logprob, TokenLogprob[]? Top)? logprob = null,
        int token = GenerationEvent.NoToken, string? error = null)
    {
        var (value, top) = logprob ?? NoLogprob;
        scheduler.Finish(sequence);
        telemetry.Finished(sequence, reason);
        sequence.Events.Writer.TryWrite(new GenerationEvent(token, text, value, top, reason, sequence.Usage, error));
        sequence.Events.Writer.TryComplete();
    }
}
