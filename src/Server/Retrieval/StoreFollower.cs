using Npgsql;
using Serving.Runtime.Retrieval;

namespace Serving.Server.Retrieval;

/// <summary>
/// Keeps one replica's in-memory indexes in step with the shared PostgreSQL store: applies the
/// change log in sequence order, one change at a time, reading each change's rows as they are
/// now (so applying a change twice, or after later ones, ends in the same state). Woken by
/// NOTIFY on a connection of its own, by a poll when no notification came for
/// <paramref name="pollInterval"/> (<c>FollowPollSeconds</c>), and by this replica's own writes
/// before they answer; after a lost connection it reconnects and reads every change after the last
/// one applied.
/// </summary>
public sealed partial class StoreFollower(PostgresCollectionStore store, long applied, TimeSpan pollInterval, RetrievalService service, ILogger logger)
{
    /// <summary>Between attempts to reconnect to a store that went away.</summary>
    private static readonly TimeSpan ReconnectDelay = TimeSpan.FromSeconds(1);

    private readonly SemaphoreSlim _applying = new(1, 1);
    private long _applied = applied;

    /// <summary>The sequence of the last change applied to this replica's indexes.</summary>
    public long Applied => Interlocked.Read(ref _applied);

    /// <summary>Applies every committed change after <see cref="Applied"/>, in order.</summary>
    public async Task CatchUpAsync()
    {
        await _applying.WaitAsync();
        try
        {
            for (IReadOnlyList<StoreChange> changes = store.ChangesAfter(_applied); changes.Count > 0; changes = store.ChangesAfter(_applied))
            {
                foreach (StoreChange change in changes)
                {
                    Apply(change);
                    Interlocked.Exchange(ref _applied, change.Sequence);
                }
            }
        }
        finally
        {
            _applying.Release();
        }
    }

    /// <summary>Listens and catches up until stopped; reconnects after any failure.</summary>
    public async Task FollowAsync(CancellationToken stopping)
    {
        while (!stopping.IsCancellationRequested)
        {
            try
            {
                await using NpgsqlConnection connection = await store.ListenAsync(stopping);
                await CatchUpAsync();
                LogFollowing(store.Location, Applied);
                while (true)
                {
                    await connection.WaitAsync(pollInterval, stopping);
                    await CatchUpAsync();
                }
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                LogLost(store.Location, Applied, e.Message, e);
                try
                {
                    await Task.Delay(ReconnectDelay, stopping);
                }
                catch (OperationCanceledException)
                {
                    return;
                }
            }
        }
    }

    private void Apply(StoreChange change)
    {
        if (change.Ids is null)
        {
            service.Replace(change.Collection, store.FindCollection(change.Collection));
        }
        else
        {
            service.Refresh(change.Collection, change.Ids, store.Items(change.Collection, change.Ids));
        }
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "Retrieval: following {Location} from change {Sequence}")]
    private partial void LogFollowing(string location, long sequence);

    [LoggerMessage(Level = LogLevel.Warning, Message = "Retrieval: lost {Location} after change {Sequence} ({Reason}); reconnecting, then catching up from there")]
    private partial void LogLost(string location, long sequence, string reason, Exception exception);
}
