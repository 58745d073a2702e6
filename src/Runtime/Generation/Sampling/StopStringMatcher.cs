namespace Serving.Runtime.Generation.Sampling;

/// <summary>What a <see cref="StopStringMatcher"/> lets out after a push.</summary>
/// <param name="Emit">Text safe to stream now.</param>
/// <param name="Stopped">True when a stop string completed; <paramref name="Emit"/> is the text before it.</param>
public readonly record struct StopScan(string Emit, bool Stopped);

/// <summary>
/// Holds back streamed text that could still become a stop string, so a partial stop string
/// is never emitted (OpenAI and vLLM never send the stop string itself). At most the longest
/// stop string's length − 1 characters are held. One per sequence; not thread-safe.
/// </summary>
public sealed class StopStringMatcher
{
    private readonly string[] _stops;
    private readonly int _longest;
    private string _held = "";
    private bool _stopped;

    /// <summary>Empty strings in <paramref name="stopStrings"/> are ignored: they would stop before any text.</summary>
    public StopStringMatcher(IReadOnlyList<string> stopStrings)
    {
        ArgumentNullException.ThrowIfNull(stopStrings);
        List<string> stops = [];
        foreach (string stop in stopStrings)
        {
            ArgumentNullException.ThrowIfNull(stop, nameof(stopStrings));
            if (stop.Length > 0)
            {
                stops.Add(stop);
                _longest = Math.Max(_longest, stop.Length);
            }
        }

        _stops = [.. stops];
    }

    /// <summary>
    /// Appends newly decoded text; returns what is safe to emit now. When a stop string
    /// completes, Emit is the text before it and Stopped is true; later calls throw.
    /// </summary>
    public StopScan Push(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        ThrowIfStopped();
        if (_stops.Length == 0)
        {
            return new StopScan(text, false);
        }

        string pending = _held + text;
        int stopAt = EarliestStop(pending);
        if (stopAt >= 0)
        {
            _stopped = true;
            _held = "";
            return new StopScan(pending[..stopAt], true);
        }

        int holdFrom = pending.Length - LongestPossibleStart(pending);
        _held = pending[holdFrom..];
        return new StopScan(pending[..holdFrom], false);
    }

    /// <summary>At the end of generation (no stop found): whatever is still held back.</summary>
    public string Flush()
    {
        ThrowIfStopped();
        string held = _held;
        _held = "";
        return held;
    }

    /// <summary>The index where the first stop string occurrence begins, or −1.</summary>
    private int EarliestStop(string text)
    {
        int earliest = -1;
        foreach (string stop in _stops)
        {
            int at = text.IndexOf(stop, StringComparison.Ordinal);
            if (at >= 0 && (earliest < 0 || at < earliest))
            {
                earliest = at;
            }
        }

        return earliest;
    }

    /// <summary>The length of the longest suffix of text that begins some stop string.</summary>
    private int LongestPossibleStart(string text)
    {
        for (int length = Math.Min(_longest - 1, text.Length); length > 0; length--)
        {
            ReadOnlySpan<char> suffix = text.AsSpan(text.Length - length);
            foreach (string stop in _stops)
            {
                if (stop.AsSpan().StartsWith(suffix, StringComparison.Ordinal))
                {
                    return length;
                }
            }
        }

        return 0;
    }

    private void ThrowIfStopped()
    {
        if (_stopped)
        {
            throw new InvalidOperationException("a stop string already ended this sequence");
        }
    }
}
