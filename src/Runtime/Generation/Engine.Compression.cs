using Serving.Runtime.Generation.Kv;
using Serving.Runtime.KvCompression;

namespace Serving.Runtime.Generation;

/// <summary>
/// KV-cache compression in the engine. A sequence with a policy compresses its global layers
/// just before a step would take them past their cap (budget + β): in prefill, chunks stop at
/// the cap; in decode, full rows are compressed before the batch is laid out. The compressed
/// cache replaces the sequence's cache like a prefill's output, so the next gather takes it in.
/// Positions stay true (<see cref="Sequence.Length"/>); only the mask follows the slots.
/// </summary>
public sealed partial class Engine
{
    private readonly KvPolicies _policies;

    /// <summary>Compressions run so far, over every sequence.</summary>
    public long NumKvCompressions { get; private set; }

    /// <summary>Tokens evicted from the global layers' caches so far.</summary>
    public long NumEvictedTokens { get; private set; }

    /// <summary>Raised on the engine thread after each compression: the policy's name and the tokens it evicted.</summary>
    public event Action<string, int>? KvCompressed;

    /// <summary>The engine's compression, with the request's own policy and budget when it names them.</summary>
    public KvCompressionOptions CompressionOf(GenerationRequest request) =>
        request.KvPolicy is null && request.KvBudget is null ? _options.KvCompression
        : _options.KvCompression with { Policy = request.KvPolicy ?? _options.KvCompression.Policy, Budget = request.KvBudget ?? _options.KvCompression.Budget };

    /// <summary>Why <paramref name="options"/> cannot run on this model, as (field, message), or null.</summary>
    public (string Field, string Message)? ValidateCompression(KvCompressionOptions options) => _policies.Validate(options);

    private KvCompressor? CreateCompressor(GenerationRequest request)
    {
        KvCompressionOptions options = CompressionOf(request);
        return options.IsEnabled ? new KvCompressor(_layout, _policies.Get(options.Policy), options) : null;
    }

    /// <summary>Where <paramref name="sequence"/>'s cache lives now: its prefill's output, or its row of the decode batch.</summary>
    private KvRowSource CacheOf(Sequence sequence) =>
        sequence.Prefill is { } prefill
            ? new KvRowSource(prefill.Outputs.PresentKeys, prefill.Outputs.PresentValues, sequence.PrefillRow, sequence.CacheLength)
            : _decode.Kv.Row(sequence.BatchRow, sequence.CacheLength);

    /// <summary>Tokens the next prefill chunk of <paramref name="sequence"/> may add, compressing first when its cache is full.</summary>
    private int RoomFor(Sequence sequence)
    {
        if (sequence.CacheRoom == 0)
        {
            Compress(sequence);
        }

        return sequence.CacheRoom;
    }

    /// <summary>Compresses the decoding rows that the coming step would take past their cap.</summary>
    private void CompressFullRows(List<Sequence> rows)
    {
        foreach (Sequence sequence in rows)
        {
            if (sequence.CacheRoom == 0)
            {
                Compress(sequence);
                _decode.RowsChanged = true;
            }
        }
    }

    private void Compress(Sequence sequence)
    {
        KvCompressor compressor = sequence.Compressor!;
        int keep = compressor.Options.KeepTokens(sequence.PromptLength), evicted = sequence.CacheLength - keep;
        DecoderOutputs compacted = compressor.Compact(CacheOf(sequence), sequence.SlotMap!, sequence.Length, sequence.PromptLength);
        sequence.SetPrefill(new PrefillCache(compacted, 1), 0);
        sequence.CacheLength = keep;
        sequence.NumEvictedTokens += evicted;
        NumKvCompressions++;
        NumEvictedTokens += evicted;
        KvCompressed?.Invoke(compressor.Policy.Name, evicted);
        _telemetry.KvEvicted(sequence.Trace, compressor.Policy.Name, evicted);
    }
}
