using System.Threading.Channels;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Text;

namespace Serving.Runtime.Generation;

/// <summary>Where a sequence is in its life: waiting for KV blocks (new or preempted), running (prefill and decode alike), finished.</summary>
public enum SequenceStatus
{
    Waiting,
    Running,
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

    public Sequence(long id, GenerationRequest request, SequenceSampler sampler, IncrementalDetokenizer detokenizer, SequenceBlocks blocks,
        KvCompressor? compressor = null)
    {
        Compressor = compressor;
        SlotMap = compressor?.CreateSlotMap();
        Blocks = blocks;
        CacheCap = compressor?.Options.CapTokens(request.PromptIds.Count) ?? int.MaxValue;
        Id = id;
        Request = request;
        Sampler = sampler;
        Detokenizer = detokenizer;
        Stop = new StopStringMatcher(request.StopStrings);
        _generated = new int[request.MaxTokens];
        Events = Channel.CreateUnbounded<GenerationEvent>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
        TopLogprobs = new TokenLogprob[Math.Max(request.Sampling.TopLogprobs ?? 0, 0)];
    }

    public long Id { get; }
    public GenerationRequest Request { get; }
    public SequenceSampler Sampler { get; }

    /// <summary>The JSON automaton the output must follow (<see cref="GenerationRequest.ResponseSchema"/>), or null.</summary>
    public Structured.JsonConstraint? Constraint { get; init; }

    public IncrementalDetokenizer Detokenizer { get; }
    public StopStringMatcher Stop { get; }

    /// <summary>The sequence's KV block tables (the KV manager's, per layer).</summary>
    public SequenceBlocks Blocks { get; }
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

    /// <summary>The true positions of the compressed layers' slots (a fresh map after a preemption).</summary>
    public KvSlotMap? SlotMap { get; private set; }

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

    /// <summary>The prefix-cache hashes of the prompt's full blocks (computed at the first admission).</summary>
    public UInt128[]? PrefixHashes { get; set; }

    /// <summary>Times the scheduler took this sequence's blocks back to make room (it then recomputes its cache).</summary>
    public int NumPreemptions { get; private set; }

    /// <summary>Prompt and generated tokens so far.</summary>
    public int NumTokens => PromptLength + NumGenerated;

    /// <summary>Token <paramref name="index"/> of prompt + generated.</summary>
    public int TokenAt(int index) => index < PromptLength ? Request.PromptIds[index] : _generated[index - PromptLength];

    /// <summary>Whether the cache still holds every token (no eviction yet): only such blocks may be shared.</summary>
    public bool IsCacheComplete => CacheLength == Length;

    /// <summary>Forgets the cache after the scheduler freed its blocks; the tokens stay, to be recomputed.</summary>
    public void Preempted()
    {
        Length = 0;
        CacheLength = 0;
        CachedTokens = 0;
        NumEvictedTokens = 0;
        SlotMap = Compressor?.CreateSlotMap();
        NumPreemptions++;
        Status = SequenceStatus.Waiting;
    }

    public int NumGenerated { get; private set; }

    public ReadOnlySpan<int> Generated => _generated.AsSpan(0, NumGenerated);

    public int LastToken => NumGenerated > 0 ? _generated[NumGenerated - 1] : Request.PromptIds[^1];

    public int PromptLength => Request.PromptIds.Count;

    public bool IsCancelled => _isCancelled;

    public void Cancel() => _isCancelled = true;

    public void Append(int token) => _generated[NumGenerated++] = token;

    public GenerationUsage Usage => new(PromptLength, NumGenerated, CachedTokens, KvTokensPeak, NumEvictedTokens);
}
