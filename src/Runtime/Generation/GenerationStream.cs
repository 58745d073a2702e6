using System.Threading.Channels;

namespace Serving.Runtime.Generation;

/// <summary>
/// A submitted sequence as its caller sees it: the events to read, and cancellation.
/// Disposing before the last event cancels the sequence; the engine frees its KV memory
/// at its next step.
/// </summary>
public sealed class GenerationStream : IDisposable
{
    private readonly Sequence _sequence;
    private readonly Action _wake;

    internal GenerationStream(Sequence sequence, Action wake) => (_sequence, _wake) = (sequence, wake);

    public long Id => _sequence.Id;

    public ChannelReader<GenerationEvent> Events => _sequence.Events.Reader;

    public void Cancel()
    {
        if (!_sequence.Events.Reader.Completion.IsCompleted)
        {
            _sequence.Cancel();
            _wake();
        }
    }

    public void Dispose() => Cancel();
}
