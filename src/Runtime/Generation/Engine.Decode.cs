using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Generation;

public sealed partial class Engine
{
    private readonly DecodeState _decode;

    /// <summary>The decode batch's caches and input buffers, grown as the batch grows and reused every step.</summary>
    private sealed class DecodeState(KvLayout layout, int vocabSize) : IDisposable
    {
        public BatchKv Kv { get; } = new(layout);
        public bool RowsChanged { get; set; } = true;
        public List<KvRowSource> Sources { get; } = [];
        public int[] RowOf { get; set; } = [];
        public long[] Tokens { get; private set; } = [];
        public long[] Mask { get; private set; } = [];
        public long[] Positions { get; private set; } = [];
        public NativeBuffer? Logits { get; private set; }
        public float[] Widened { get; } = new float[vocabSize];
        public int VocabSize => vocabSize;

        public void Reserve(int rows, int maskLength, int logitBytes)
        {
            if (Tokens.Length < rows)
            {
                (Tokens, Positions) = (new long[rows], new long[rows]);
            }

            if (Mask.Length < rows * maskLength)
            {
                // 25% headroom: the mask grows by one column per step.
                Mask = new long[rows * maskLength + rows * maskLength / 4];
            }

            long bytes = (long)rows * vocabSize * logitBytes;
            if (Logits is null || Logits.Bytes < bytes)
            {
                Logits?.Dispose();
                Logits = new NativeBuffer(bytes);
            }
        }

        public void Dispose()
        {
            Kv.Dispose();
            Logits?.Dispose();
        }
    }

    /// <summary>
    /// One call for every decoding sequence: each feeds its last token at its true position
    /// (its cache may hold fewer slots once compressed; the mask marks those slots).
    /// </summary>
    private void Decode()
    {
        List<Sequence> rows = _scheduler.Decoding;
        if (rows.Count == 0)
        {
            if (_decode.Kv.Rows > 0)
            {
                _decode.Kv.Clear();
            }

            return;
        }

        CompressFullRows(rows);
        if (_decode.RowsChanged)
        {
            GatherRows(rows);
        }

        DecoderBatch batch = FillInputs(rows);
        var (pastKeys, pastValues, presentKeys, presentValues) = _decode.Kv.Step();
        using OrtValue logits = LogitsValue(rows.Count);
        _runner.RunInto(batch with { PastKeys = pastKeys, PastValues = pastValues }, logits, presentKeys, presentValues);
        _decode.Kv.Advance();
        _telemetry.DecodeStep(rows.Count);
        for (int r = rows.Count - 1; r >= 0; r--)
        {
            rows[r].Advance(1);
        }

        // Back to front: a finished row leaves the list without moving the rows not yet sampled.
        for (int r = rows.Count - 1; r >= 0; r--)
        {
            Accept(rows[r], LogitsRow(r));
        }
    }

    /// <summary>Lays out the batch anew after rows joined or left, from the old batch or a prefill's cache.</summary>
    private void GatherRows(List<Sequence> rows)
    {
        _decode.Sources.Clear();
        foreach (Sequence sequence in rows)
        {
            _decode.Sources.Add(CacheOf(sequence));
        }

        _decode.Kv.Gather(_decode.Sources);
        for (int r = 0; r < rows.Count; r++)
        {
            rows[r].BatchRow = r;
            rows[r].ReleasePrefill();
        }

        _decode.RowsChanged = false;
    }

    private DecoderBatch FillInputs(List<Sequence> rows)
    {
        int past = _decode.Kv.PastLength, width = past + 1;
        _decode.Reserve(rows.Count, width, _model.Signature.LogitsType == TensorElementType.Float16 ? 2 : 4);
        Span<long> mask = _decode.Mask.AsSpan(0, rows.Count * width);
        for (int r = 0; r < rows.Count; r++)
        {
            Sequence sequence = rows[r];
            _decode.Tokens[r] = sequence.LastToken;
            _decode.Positions[r] = sequence.Length;
            Span<long> row = mask.Slice(r * width, width);
            row[..(past - sequence.CacheLength)].Clear();
            row[(past - sequence.CacheLength)..].Fill(1L);
        }

        return new DecoderBatch(rows.Count, 1, _decode.Tokens.AsMemory(0, rows.Count), _decode.Mask.AsMemory(0, rows.Count * width),
            _decode.Positions.AsMemory(0, rows.Count), [], []) { LastLogitsOnly = true };
    }

    private OrtValue LogitsValue(int rows)
    {
        int elementBytes = _model.Signature.LogitsType == TensorElementType.Float16 ? 2 : 4;
        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, _model.Signature.LogitsType, [rows, 1, _decode.VocabSize],
            _decode.Logits!.Pointer, (long)rows * _decode.VocabSize * elementBytes);
    }

    private ReadOnlySpan<float> LogitsRow(int row)
    {
        int vocab = _decode.VocabSize;
        if (_model.Signature.LogitsType == TensorElementType.Float)
        {
            return MemoryMarshal.Cast<byte, float>(_decode.Logits!.Slice((long)row * vocab * 4, (long)vocab * 4));
        }

        ReadOnlySpan<Float16> half = MemoryMarshal.Cast<byte, Float16>(_decode.Logits!.Slice((long)row * vocab * 2, (long)vocab * 2));
        for (int i = 0; i < vocab; i++)
        {
            _decode.Widened[i] = (float)half[i];
        }

        return _decode.Widened;
    }

    /// <summary>
    /// Samples the next token of <paramref name="sequence"/>, streams the text it completes, and
    /// finishes the sequence on a stop token, a stop string or its token limit.
    /// </summary>
    private void Accept(Sequence sequence, ReadOnlySpan<float> logits)
    {
        float logprob = 0;
        int topCount = 0;
        int token = sequence.Request.Sampling.TopLogprobs is null
            ? sequence.Sampler.Sample(logits)
            : sequence.Sampler.Sample(logits, out logprob, sequence.TopLogprobs, out topCount);
        sequence.Append(token);
        var logprobs = (logprob, sequence.TopLogprobs.Length > 0 ? sequence.TopLogprobs[..topCount] : null);
        bool isStopToken = (!sequence.Request.IgnoreEos && _eosIds.Contains(token)) || sequence.Request.StopTokenIds.Contains(token);
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
}
