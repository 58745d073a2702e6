using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

/// <summary>
/// Runs a step plan as one ONNX Runtime call of a model loaded for the paged KV cache
/// (<see cref="PagedAttentionRewrite"/>): every chunk's tokens packed into <c>[1, T]</c> at
/// their true positions, the block tables and cache lengths of every layer, and the rows whose
/// logits the step samples. Attention reads and writes the KV manager's pool in place. Buffers
/// grow to the largest step and are reused; one runner serves the engine thread.
/// </summary>
internal sealed class PagedRunner : IDisposable
{
    private static readonly string[] InputNames =
    [
        "input_ids", "position_ids", PagedAttentionRewrite.KvPool, PagedAttentionRewrite.BlockTables,
        PagedAttentionRewrite.PastLengths, PagedAttentionRewrite.QueryStarts, PagedAttentionRewrite.LogitsIndices,
    ];

    private readonly DecoderModel _model;
    private readonly KvCacheManager _kv;
    private readonly OrtValue _pool;
    private readonly OrtValue[] _inputs = new OrtValue[InputNames.Length];
    private readonly string[] _outputNames;
    private readonly OrtValue[] _outputs = new OrtValue[1];
    private readonly RunOptions _runOptions = new();
    private readonly List<SequenceBlocks> _batch = [];
    private long[] _ids = [], _positions = [], _rows = [];
    private int[] _tables = [], _pastLengths = [], _starts = [];
    private NativeBuffer? _logits;

    public PagedRunner(DecoderModel model, KvCacheManager kv)
    {
        if (!model.Signature.IsPaged)
        {
            throw new ArgumentException($"{model.OnnxPath}: the engine needs the model loaded with {nameof(DecoderLoadOptions.PagedAttention)}", nameof(model));
        }

        if (kv.Pool.Device.Name != model.Device.Name)
        {
            throw new ArgumentException($"{model.OnnxPath}: the model runs on {model.Device.Name} and its KV pool is memory of {kv.Pool.Device.Name}; allocate it with {nameof(KvPool)}.{nameof(KvPool.Allocate)}(model.Device, ...)", nameof(kv));
        }

        (_model, _kv) = (model, kv);
        _outputNames = [model.Signature.Logits];
        KvLayout layout = kv.Layout;
        // On CUDA a device address: the provider's PagedAttention reads and writes it in place (serving.kv_pool=device).
        _pool = OrtValue.CreateTensorValueWithData(kv.Pool.MemoryInfo, layout.ElementType,
            [kv.NumBlocks, 2, layout.Heads, kv.BlockTokens, layout.HeadDim], kv.Pool.Pointer, kv.AllocatedBytes);
    }

    private int Vocab => _model.Config.VocabSize;

    /// <summary>Runs the step; returns the logits of the sampled chunks, in plan order, <c>[NumSampled, vocab]</c>, valid until the next call.</summary>
    public ReadOnlySpan<float> Run(StepPlan plan)
    {
        int sequences = plan.Chunks.Count, layers = _kv.Layout.Layers;
        // A step that samples nothing (prefill chunks mid-prompt) still computes one row: an empty Gather would make a zero-row Gemm.
        int rows = Math.Max(plan.NumSampled, 1);
        Reserve(plan.NumTokens, sequences, rows);
        FillTokens(plan);
        _batch.Clear();
        foreach (ScheduledChunk chunk in plan.Chunks)
        {
            _batch.Add(chunk.Sequence.Blocks);
        }

        int cols = _kv.TableCols(_batch);
        if (_tables.Length < layers * sequences * cols)
        {
            _tables = new int[layers * sequences * cols * 5 / 4];
        }

        _kv.WriteTables(_batch, _tables, cols);
        FillLengths(plan, layers);
        Execute(plan, sequences, layers, cols, rows);
        return MemoryMarshal.Cast<byte, float>(_logits!.Slice(0, (long)plan.NumSampled * Vocab * 4));
    }

    private void FillTokens(StepPlan plan)
    {
        int t = 0, row = 0;
        _starts[0] = 0;
        for (int s = 0; s < plan.Chunks.Count; s++)
        {
            ScheduledChunk chunk = plan.Chunks[s];
            for (int i = 0; i < chunk.Count; i++, t++)
            {
                int position = chunk.Sequence.Length + i;
                _ids[t] = chunk.Sequence.TokenAt(position);
                _positions[t] = position;
            }

            _starts[s + 1] = t;
            if (chunk.Samples)
            {
                _rows[row++] = t - 1;
            }
        }

        if (row == 0)
        {
            _rows[0] = t - 1;
        }
    }

    /// <summary>Global layers hold the cache's slots (fewer than the length once compressed); sliding layers the true length.</summary>
    private void FillLengths(StepPlan plan, int layers)
    {
        int sequences = plan.Chunks.Count;
        for (int layer = 0; layer < layers; layer++)
        {
            bool sliding = _kv.Layout.IsTrimmed[layer];
            for (int s = 0; s < sequences; s++)
            {
                Sequence sequence = plan.Chunks[s].Sequence;
                _pastLengths[layer * sequences + s] = sliding ? sequence.Length : sequence.CacheLength;
            }
        }
    }

    private void Execute(StepPlan plan, int sequences, int layers, int cols, int rows)
    {
        int tokens = plan.NumTokens;
        try
        {
            _inputs[0] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _ids.AsMemory(0, tokens), [1, tokens]);
            _inputs[1] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _positions.AsMemory(0, tokens), [1, tokens]);
            _inputs[2] = _pool;
            _inputs[3] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _tables.AsMemory(0, layers * sequences * cols), [layers, sequences, cols]);
            _inputs[4] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _pastLengths.AsMemory(0, layers * sequences), [layers, sequences]);
            _inputs[5] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _starts.AsMemory(0, sequences + 1), [sequences + 1]);
            _inputs[6] = OrtValue.CreateTensorValueFromMemory(OrtMemoryInfo.DefaultInstance, _rows.AsMemory(0, rows), [rows]);
            _outputs[0] = OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, TensorElementType.Float, [1, rows, Vocab],
                _logits!.Pointer, (long)rows * Vocab * 4);
            _model.Session.Run(_runOptions, InputNames, _inputs, _outputNames, _outputs);
        }
        finally
        {
            for (int i = 0; i < _inputs.Length; i++)
            {
                if (i != 2)
                {
                    _inputs[i]?.Dispose();
                }

                _inputs[i] = null!;
            }

            _outputs[0]?.Dispose();
            _outputs[0] = null!;
        }
    }

    /// <summary>Grows the buffers to the step (with headroom, so a steady batch allocates nothing).</summary>
    private void Reserve(int tokens, int sequences, int rows)
    {
        if (_ids.Length < tokens)
        {
            (_ids, _positions) = (new long[tokens + tokens / 4 + 8], new long[tokens + tokens / 4 + 8]);
        }

        if (_starts.Length < sequences + 1)
        {
            (_starts, _rows) = (new int[sequences + 9], new long[sequences + 9]);
            _pastLengths = new int[_kv.Layout.Layers * (sequences + 8)];
        }

        long bytes = (long)rows * Vocab * 4;
        if (_logits is null || _logits.Bytes < bytes)
        {
            _logits?.Dispose();
            _logits = new NativeBuffer(bytes + bytes / 4);
        }
    }

    public void Dispose()
    {
        _pool.Dispose();
        _logits?.Dispose();
        _runOptions.Dispose();
    }
}
