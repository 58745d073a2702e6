using System.Threading.Channels;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Text;

namespace Serving.Runtime.Generation;

/// <summary>Where a sequence is in its life: waiting for KV memory, prefilling its prompt, decoding.</summary>
public enum SequenceStatus
{
    Waiting,
    Prefilling,
    Decoding,
    Finished,
}

/// <summary>
/// The engine's state of one sequence. Touched only by the engine thread, except
/// <see cref="IsCancelled"/>, which any thread may set.
/// </summary>
internal sealed class Sequence
{
    private readonly int[] _generated;
    private volatile bool _isCancelled;

    public Sequence(long id, GenerationRequest request, SequenceSampler sampler, IncrementalDetokenizer detokenizer, long reservedBytes,
        KvCompressor? compressor = null)
    {
        Compressor = compressor;
        SlotMap = compressor?.CreateSlotMap();
        CacheCap = compressor?.Options.CapTokens(request.PromptIds.Count) ?? int.MaxValue;
        Id = id;
        Request = request;
        Sampler = sampler;
        Detokenizer = detokenizer;
        Stop = new StopStringMatcher(request.StopStrings);
        ReservedBytes = reservedBytes;
        _generated = new int[request.MaxTokens];
        Events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        TopLogprobs = new TokenLogprob[Math.Max(request.Sampling.TopLogprobs ?? 0, 0)];
    }

    public long Id { get; }
    public GenerationRequest Request { get; }
    public SequenceSampler Sampler { get; }
    public IncrementalDetokenizer Detokenizer { get; }
    public StopStringMatcher Stop { get; }
    public long ReservedBytes { get; }
    public Channel<GenerationEvent> Events { get; }
    public TokenLogprob[] TopLogprobs { get; }
    public SequenceStatus Status { get; set; }

    /// <summary>Queue, admission and first-token times, and the request span (src/Runtime/Telemetry).</summary>
    public Telemetry.SequenceTrace Trace { get; } = new();

    /// <summary>Tokens processed (prompt and generated): the next token's true position.</summary>
    public int Length { get; set; }

    /// <summary>Slots of each global layer's cache: <see cref="Length"/> until KV compression evicts tokens.</summary>
    public int CacheLength { get; set; }

    /// <summary>This sequence's KV compression, or null when its cache keeps every token.</summary>
    public KvCompressor? Compressor { get; }

    /// <summary>The true positions of the compressed layers' slots.</summary>
    public KvSlotMap? SlotMap { get; }

    /// <summary>The most slots a global layer may hold: it is compressed before it would exceed this.</summary>
    public int CacheCap { get; }

    /// <summary>Room left before the cache must be compressed.</summary>
    public int CacheRoom => CacheCap - CacheLength;

    /// <summary>The most tokens any global layer's cache held.</summary>
    public int KvTokensPeak { get; private set; }

    public int NumEvictedTokens { get; set; }

    /// <summary>Adds <paramref name="count"/> tokens to the sequence and to its cache.</summary>
    public void Advance(int count)
    {
        Length += count;
        CacheLength += count;
        KvTokensPeak = Math.Max(KvTokensPeak, CacheLength);
    }

    /// <summary>Prompt tokens whose cache came from the prefix cache.</summary>
    public int CachedTokens { get; set; }

    /// <summary>The prefix cache's chain keys of the prompt's whole blocks.</summary>
    public UInt128[] BlockKeys { get; set; } = [];

    /// <summary>The cache of a prefilled prompt (row <see cref="PrefillRow"/> of it) until the decode batch takes it in.</summary>
    public PrefillCache? Prefill { get; private set; }

    public int PrefillRow { get; private set; }

    /// <summary>Whether the prefix cache was asked for this prompt yet.</summary>
    public bool HasLookedUpPrefix { get; set; }

    /// <summary>The sequence's row in the decode batch after the last gather.</summary>
    public int BatchRow { get; set; }

    public int NumGenerated { get; private set; }

    public ReadOnlySpan<int> Generated => _generated.AsSpan(0, NumGenerated);

    public int LastToken => NumGenerated > 0 ? _generated[NumGenerated - 1] : Request.PromptIds[^1];

    public int PromptLength => Request.PromptIds.Count;

    public bool IsCancelled => _isCancelled;

    public void Cancel() => _isCancelled = true;

    public void Append(int token) => _generated[NumGenerated++] = token;

    public GenerationUsage Usage => new(PromptLength, NumGenerated, CachedTokens, KvTokensPeak, NumEvictedTokens);

    /// <summary>Drops the prefill cache once the batch holds it (or the sequence ends).</summary>
    public void ReleasePrefill()
    {
        Prefill?.Release();
        Prefill = null;
    }

    /// <summary>Holds row <paramref name="row"/> of <paramref name="prefill"/> as this sequence's cache, letting go of the previous one.</summary>
    public void SetPrefill(PrefillCache prefill, int row)
    {
        ReleasePrefill();
        (Prefill, PrefillRow) = (prefill, row);
    }
}
