using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation;

public sealed class SequenceStepperTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private const int Budget = 20, Beta = 5, Sinks = StreamingWindowPolicy.DefaultSinkTokens;

    /// <summary>
    /// Positions after eviction are the true ones: a cache compressed by the window policy gives
    /// the same logits as the full cache with the evicted tokens masked out, where every token
    /// sits at its original position. (B − sinks = 16 recent tokens cover the 15-token sliding
    /// window, whose layers keep all their tokens either way.)
    /// </summary>
    [Fact]
    public void ACompressedCacheEqualsTheFullCacheWithTheEvictedTokensMasked()
    {
        int[] prompt = Enumerable.Range(0, 10).Select(i => 5 + i * 7).ToArray();
        var options = new KvCompressionOptions { Policy = "window", Budget = Budget, Beta = Beta };
        using var compressed = new SequenceStepper(fixture.Model, options);
        using var masked = new MaskedReference(fixture.Model);
        compressed.Prefill(prompt);
        masked.Prefill(prompt);

        var visible = new bool[80];
        Array.Fill(visible, true);
        float worstMasked = 0, worstUnmasked = 0;
        using var full = new SequenceStepper(fixture.Model);
        full.Prefill(prompt);
        for (int length = prompt.Length; length < 70; length++)
        {
            int token = SequenceSampler.ArgMax(compressed.Logits);
            if (compressed.CacheLength == Budget + Beta)
            {
                // The window keeps the sinks and the newest B − sinks tokens.
                for (int p = Sinks; p < length - (Budget - Sinks); p++)
                {
                    visible[p] = false;
                }
            }

            compressed.Step(token);
            masked.Step(token, visible);
            full.Step(token);
            worstMasked = Math.Max(worstMasked, MaxRelativeError(compressed.Logits, masked.Logits));
            worstUnmasked = Math.Max(worstUnmasked, MaxRelativeError(compressed.Logits, full.Logits));
            Assert.True(compressed.CacheLength <= Budget + Beta);
        }

        Assert.True(worstMasked < 1e-4f, $"compressed vs masked: {worstMasked}");
        Assert.True(worstUnmasked > 1e-2f, $"compressed vs full: {worstUnmasked} (the eviction must matter for this test to mean anything)");
        Assert.Equal(Budget + Beta, compressed.KvTokensPeak);
        Assert.Equal(70, compressed.CacheLength + compressed.NumEvictedTokens);
    }

    private static float MaxRelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        float worst = 0, scale = 1e-6f;
        for (int i = 0; i < expected.Length; i++)
        {
            scale = Math.Max(scale, Math.Abs(expected[i]));
        }

        for (int i = 0; i < expected.Length; i++)
        {
            worst = Math.Max(worst, Math.Abs(actual[i] - expected[i]) / scale);
        }

        return worst;
    }

    /// <summary>Every token stays in the cache; <c>attention_mask</c> hides the evicted ones.</summary>
    private sealed class MaskedReference(Serving.Runtime.Models.DecoderModel model) : IDisposable
    {
        private readonly ModelRunner _runner = new(model);
        private DecoderOutputs? _outputs;
        private int _length;

        public ReadOnlySpan<float> Logits => _outputs!.Logits(0, _outputs.LogitPositions - 1);

        public void Prefill(int[] prompt)
        {
            int layers = model.Signature.Layers.Count;
            OrtValue[] empty = [.. Enumerable.Range(0, 2 * layers).Select(_ => _runner.EmptyPast(1))];
            _outputs = _runner.Run(new DecoderBatch(1, prompt.Length, prompt.Select(t => (long)t).ToArray(), Enumerable.Repeat(1L, prompt.Length).ToArray(),
                Enumerable.Range(0, prompt.Length).Select(p => (long)p).ToArray(), empty[..layers], empty[layers..]) { LastLogitsOnly = true });
            foreach (OrtValue value in empty)
            {
                value.Dispose();
            }

            _length = prompt.Length;
        }

        public void Step(int token, bool[] visible)
        {
            long[] mask = Enumerable.Range(0, _length + 1).Select(p => p == _length || visible[p] ? 1L : 0L).ToArray();
            DecoderOutputs next = _runner.Run(new DecoderBatch(1, 1, new long[] { token }, mask, new long[] { _length }, _outputs!.PresentKeys, _outputs.PresentValues) { LastLogitsOnly = true });
            _outputs.Dispose();
            _outputs = next;
            _length++;
        }

        public void Dispose()
        {
            _outputs?.Dispose();
            _runner.Dispose();
        }
    }
}
