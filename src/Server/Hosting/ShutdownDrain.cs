using Microsoft.Extensions.Options;

namespace Serving.Server.Hosting;

/// <summary>
/// Graceful shutdown. When the host begins to stop (SIGTERM's <see cref="IHostApplicationLifetime.ApplicationStopping"/>,
/// or <see cref="StoppingAsync"/>, which the host runs before it stops Kestrel) the server drains: new requests get 503
/// <c>shutting_down</c> (<see cref="Http.ShutdownDrainMiddleware"/>), readiness reports 503 <c>draining</c> so a load
/// balancer takes the pod out, and running requests get <c>Serving:ShutdownDrainSeconds</c> to finish. At the end of
/// that time <see cref="Expired"/> is cancelled: generation handlers cancel their sequences and answer a 503 body, or,
/// mid-stream, an error event and <c>[DONE]</c>. Kestrel keeps listening until then, so clients get an answer, not a
/// refused connection; it stops after <see cref="StoppingAsync"/> returns.
/// </summary>
public sealed class ShutdownDrain(IHostApplicationLifetime lifetime, IOptions<ServingOptions> options, ILogger<ShutdownDrain> logger)
    : IHostedLifecycleService, IDisposable
{
    /// <summary>Host shutdown time past the drain: the handlers write their closing events, then Kestrel and the engines stop.</summary>
    public static readonly TimeSpan StopMargin = TimeSpan.FromSeconds(5);

    private readonly CancellationTokenSource _expired = new();
    private readonly TaskCompletionSource _idle = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private CancellationTokenRegistration _stopping;
    private int _numInFlight;
    private int _isDraining;

    /// <summary>The host is stopping: no new request is taken.</summary>
    public bool IsDraining => Volatile.Read(ref _isDraining) == 1;

    /// <summary>Cancelled when the drain time has passed; what still runs must end now.</summary>
    public CancellationToken Expired => _expired.Token;

    public int NumInFlight => Volatile.Read(ref _numInFlight);

    /// <summary>Counts a request in, or refuses it (false) once draining.</summary>
    public bool TryEnter()
    {
        Interlocked.Increment(ref _numInFlight);
        if (IsDraining)
        {
            Exit();
            return false;
        }

        return true;
    }

    public void Exit()
    {
        if (Interlocked.Decrement(ref _numInFlight) == 0 && IsDraining)
        {
            _idle.TrySetResult();
        }
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _stopping = lifetime.ApplicationStopping.Register(BeginDrain);
        return Task.CompletedTask;
    }

    /// <summary>Waits for the running requests, at most the drain time; then cancels what is left and waits for it to answer.</summary>
    public async Task StoppingAsync(CancellationToken cancellationToken)
    {
        BeginDrain();
        int seconds = options.Value.ShutdownDrainSeconds;
        if (!await WaitIdleAsync(TimeSpan.FromSeconds(seconds), cancellationToken))
        {
            logger.LogWarning("Shutdown: {Count} requests still running after the drain time of {Seconds} s are cancelled", NumInFlight, seconds);
            await _expired.CancelAsync();
            // Cancelled handlers answer within a step of the engine; the host's timeout (drain + StopMargin) bounds the wait.
            await WaitIdleAsync(Timeout.InfiniteTimeSpan, cancellationToken);
        }
    }

    /// <summary>True when no request runs any more, false when <paramref name="limit"/> or the host's timeout came first.</summary>
    private async Task<bool> WaitIdleAsync(TimeSpan limit, CancellationToken cancellationToken)
    {
        using var timer = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task finished = await Task.WhenAny(_idle.Task, Task.Delay(limit, timer.Token));
        await timer.CancelAsync();
        return finished == _idle.Task;
    }

    private void BeginDrain()
    {
        // Interlocked (a full fence): TryEnter's increment and this flag must not pass each other.
        if (Interlocked.Exchange(ref _isDraining, 1) == 1)
        {
            return;
        }

        logger.LogInformation("Shutdown: draining {Count} running requests for up to {Seconds} s; new requests get 503",
            NumInFlight, options.Value.ShutdownDrainSeconds);
        if (NumInFlight == 0)
        {
            _idle.TrySetResult();
        }
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public void Dispose()
    {
        _stopping.Dispose();
        _expired.Dispose();
    }
}
