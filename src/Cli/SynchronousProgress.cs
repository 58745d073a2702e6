namespace Serving.Cli;

/// <summary>Reports on the worker's thread; <see cref="Progress{T}"/> would post to the thread pool after the bar ends.</summary>
internal sealed class SynchronousProgress(Action<(long Done, long Total)> report) : IProgress<(long Done, long Total)>
{
    public void Report((long Done, long Total) value) => report(value);
}
