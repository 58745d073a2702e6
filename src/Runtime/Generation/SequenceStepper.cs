using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;

namespace Serving.Runtime.Generation;

/// <summary>
/// One sequence driven by hand, outside the batching engine: the prompt in chunks, then one
/// token per call, each call's present caches fed back as the next past. With a compressor,
/// the global layers' caches are compressed before a call would take them past their cap,
/// exactly as the engine does. Positions are true positions from 0. The CLI's generate and
/// eval-kv use it (eval-kv feeds its own tokens: teacher forcing).
/// </summary>
public sealed class SequenceStepper : IDisposable
{
    /// <summary>Prompt tokens per prefill call: attention scores grow with its square (8k tokens in one call would need GBs).</summary>
    public const int PrefillChunkTokens = 512;

    private readonly DecoderModel _model;
    private readonly ModelRunner _runner;
    private readonly KvLayout _layout;
    private readonly KvCompressor? _compressor;
    private readonly KvSlotMap? _slots;
    private readonly long[] _tokens = new long[PrefillChunkTokens];
    private readonly long[] _ones, _positions;
    private DecoderOutputs? _outputs;
    private int _promptLength;

    public SequenceStepper(DecoderModel model, KvCompressionOptions? compression = null)
    {
        _model = model;
        _layout = new KvLayout(model.Signature, model.Config.SlidingWindow);
        if (compression is { IsEnabled: true })
        {
            if (model.Signature.CompressionBlocker is { } reason)
            {
                throw new ArgumentException($"{model.OnnxPath}: KV compression is unavailable for this graph as exported: it {reason} (the server's paged engine compresses it)",
                    nameof(compression));
            }

            var policies = new KvPolicies(model);
            if (policies.Validate(compression) is { } invalid)
            {
                throw new ArgumentException(invalid.Message, nameof(compression));
            }

            _compressor = new KvCompressor(_layout, policies.Get(compression.Policy), compression);
            _slots = _compressor.CreateSlotMap();
        }

        _runner = new ModelRunner(model);
        int context = model.Config.MaxPositionEmbeddings;
        (_ones, _positions) = (new long[context], new long[context]);
        Array.Fill(_ones, 1L);
        for (int i = 0; i < context; i++)
        {
            _positions[i] = i;
        }
    }

    /// <summary>Tokens processed: the next token's position.</summary>
    public int Length { get; private set; }

    /// <summary>Slots each global layer holds now.</summary>
    public int CacheLength { get; private set; }

    /// <summary>The most tokens any global layer's cache held.</summary>
    public int KvTokensPeak { get; private set; }

    /// <summary>The most bytes the sequence's caches (every layer, keys and values) held.</summary>
    public long KvBytesPeak { get; private set; }

    public int NumEvictedTokens { get; private set; }

    /// <summary>The logits after the last token fed.</summary>
    public ReadOnlySpan<float> Logits => _outputs is { } outputs ? outputs.Logits(0, outputs.LogitPositions - 1)
        : throw new InvalidOperationException("no token has been fed yet");

    /// <summary>Feeds the prompt (or any run of tokens) in chunks; the logits are those after its last token.</summary>
    public void Prefill(IReadOnlyList<int> tokens)
    {
        if (tokens.Count == 0)
        {
            throw new ArgumentException("there are no tokens to feed", nameof(tokens));
        }

        if (Length + tokens.Count > _model.Config.MaxPositionEmbeddings)
        {
            throw new ArgumentOutOfRangeException(nameof(tokens), $"{Length + tokens.Count} tokens exceed the context length {_model.Config.MaxPositionEmbeddings}");
        }

        if (Length == 0)
        {
            _promptLength = tokens.Count;
        }

        for (int done = 0; done < tokens.Count;)
        {
            int count = Math.Min(Math.Min(tokens.Count - done, PrefillChunkTokens), Room());
            for (int t = 0; t < count; t++)
            {
                _tokens[t] = tokens[done + t];
            }

            Run(count);
            done += count;
        }
    }

    /// <summary>Feeds one token.</summary>
    public void Step(int token)
    {
        if (Length + 1 > _model.Config.MaxPositionEmbeddings)
        {
            throw new InvalidOperationException($"the sequence has reached the context length {_model.Config.MaxPositionEmbeddings}");
        }

        Room();
        _tokens[0] = token;
        Run(1);
    }

    /// <summary>Tokens that fit before the cap, compressing first when there are none.</summary>
    private int Room()
    {
        if (_compressor is null)
        {
            return int.MaxValue;
        }

        int cap = _compressor.Options.CapTokens(_promptLength);
        if (CacheLength < cap)
        {
            return cap - CacheLength;
        }

        var source = new KvRowSource(_outputs!.PresentKeys, _outputs.PresentValues, 0, CacheLength);
        DecoderOutputs compacted = _compressor.Compact(source, _slots!, Length, _promptLength);
        _outputs.Dispose();
        _outputs = compacted;
        int keep = _compressor.Options.KeepTokens(_promptLength);
        NumEvictedTokens += CacheLength - keep;
        CacheLength = keep;
        return cap - keep;
    }

    private void Run(int count)
    {
        OrtValue[]? empty = _outputs is null ? EmptyPasts() : null;
        int layers = _layout.Layers;
        try
        {
            var batch = new DecoderBatch(1, count, _tokens.AsMemory(0, count), _ones.AsMemory(0, CacheLength + count), _positions.AsMemory(Length, count),
                _outputs?.PresentKeys ?? empty![..layers], _outputs?.PresentValues ?? empty![layers..]) { LastLogitsOnly = true };
            DecoderOutputs next = _runner.Run(batch);
            _outputs?.Dispose();
            _outputs = next;
        }
        finally
        {
            foreach (OrtValue value in empty ?? [])
            {
                value.Dispose();
            }
        }

        Length += count;
        CacheLength += count;
        KvTokensPeak = Math.Max(KvTokensPeak, CacheLength);
        KvBytesPeak = Math.Max(KvBytesPeak, _layout.SequenceBytes(Length, CacheLength));
    }

    private OrtValue[] EmptyPasts()
    {
        var empty = new OrtValue[2 * _layout.Layers];
        for (int i = 0; i < empty.Length; i++)
        {
            empty[i] = _runner.EmptyPast(1);
        }

        return empty;
    }

    public void Dispose()
    {
        _outputs?.Dispose();
        _runner.Dispose();
    }
}
