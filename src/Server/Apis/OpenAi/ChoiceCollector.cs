using System.Text;
using System.Threading.Channels;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Telemetry;

namespace Serving.Server.Apis.OpenAi;

/// <summary>One choice's generated tokens, text and logprobs, gathered from its events.</summary>
public sealed class ChoiceResult(int index)
{
    public int Index { get; } = index;
    public StringBuilder Text { get; } = new();
    public List<(int TokenId, float Logprob, TokenLogprob[]? Top)> Tokens { get; } = [];
    public FinishReason? Finish { get; set; }
    public GenerationUsage Usage { get; set; }
    public string? Error { get; set; }

    public void Add(GenerationEvent e)
    {
        if (e.HasToken)
        {
            Tokens.Add((e.TokenId, e.Logprob, e.TopLogprobs));
        }

        Text.Append(e.Text);
        if (e.Finish is { } finish)
        {
            (Finish, Usage, Error) = (finish, e.Usage, e.Error);
        }
    }
}

/// <summary>Reads the streams of one API call: all to the end, or merged as they come.</summary>
public static class ChoiceCollector
{
    public static async Task<ChoiceResult[]> CollectAsync(IReadOnlyList<GenerationStream> streams, GenAiOperation? genAi, CancellationToken cancellation)
    {
        var results = new ChoiceResult[streams.Count];
        for (int i = 0; i < streams.Count; i++)
        {
            results[i] = new ChoiceResult(i);
            await foreach (GenerationEvent e in streams[i].Events.ReadAllAsync(cancellation))
            {
                genAi?.OnEvent(e);
                results[i].Add(e);
            }
        }

        return results;
    }

    /// <summary>Every stream's events tagged with its index, in the order they arrive.</summary>
    public static IAsyncEnumerable<(int Index, GenerationEvent Event)> Merge(IReadOnlyList<GenerationStream> streams, CancellationToken cancellation)
    {
        if (streams.Count == 1)
        {
            return Single(streams[0], cancellation);
        }

        var merged = Channel.CreateUnbounded<(int, GenerationEvent)>(new UnboundedChannelOptions { SingleReader = true });
        Task[] pumps = new Task[streams.Count];
        for (int i = 0; i < streams.Count; i++)
        {
            pumps[i] = Pump(i, streams[i], merged.Writer, cancellation);
        }

        _ = Task.WhenAll(pumps).ContinueWith(done => merged.Writer.TryComplete(done.Exception?.InnerException), TaskScheduler.Default);
        return merged.Reader.ReadAllAsync(cancellation);
    }

    private static async IAsyncEnumerable<(int, GenerationEvent)> Single(GenerationStream stream,
        [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellation)
    {
        await foreach (GenerationEvent e in stream.Events.ReadAllAsync(cancellation))
        {
            yield return (0, e);
        }
    }

    private static async Task Pump(int index, GenerationStream stream, ChannelWriter<(int, GenerationEvent)> writer, CancellationToken cancellation)
    {
        await foreach (GenerationEvent e in stream.Events.ReadAllAsync(cancellation))
        {
            await writer.WriteAsync((index, e), cancellation);
        }
    }
}
