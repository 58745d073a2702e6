using System.Diagnostics;

namespace Serving.Runtime.Telemetry;

/// <summary>
/// The timeline of one sequence: when it was queued, admitted and gave its first token, and
/// the request span it belongs to (the caller's <see cref="Activity.Current"/> at submission;
/// the engine thread has none of its own). Phase spans are made after the fact with these
/// times, so nothing is held open across threads. One allocation per sequence.
/// </summary>
public sealed class SequenceTrace
{
    private readonly DateTime _queuedUtc = DateTime.UtcNow;
    private List<ActivityEvent>? _evictions;

    public SequenceTrace() => Parent = Activity.Current?.Context ?? default;

    public long QueuedAt { get; } = Stopwatch.GetTimestamp();

    public long AdmittedAt { get; private set; }

    public long FirstTokenAt { get; private set; }

    /// <summary>The request span's context; default when the request was not traced.</summary>
    public ActivityContext Parent { get; }

    public bool IsTraced => Parent != default && Parent.TraceFlags.HasFlag(ActivityTraceFlags.Recorded);

    public void Admitted() => AdmittedAt = Stopwatch.GetTimestamp();

    internal void FirstToken() => FirstTokenAt = Stopwatch.GetTimestamp();

    internal DateTime UtcAt(long timestamp) => _queuedUtc + Stopwatch.GetElapsedTime(QueuedAt, timestamp);

    /// <summary>Kept for the decode span (only when traced): one event per eviction.</summary>
    internal void AddEviction(string policy, int evictedTokens)
    {
        if (!IsTraced)
        {
            return;
        }

        (_evictions ??= []).Add(new ActivityEvent(TelemetryNames.EvictionEvent, new DateTimeOffset(UtcAt(Stopwatch.GetTimestamp())),
            new ActivityTagsCollection { [TelemetryNames.KvPolicy] = policy, ["serving.kv_cache.evicted_tokens"] = evictedTokens }));
    }

    internal IReadOnlyList<ActivityEvent> Evictions => _evictions ?? (IReadOnlyList<ActivityEvent>)[];
}
