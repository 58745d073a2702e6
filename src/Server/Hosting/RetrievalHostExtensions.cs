using Microsoft.Extensions.Options;
using Serving.Server.Retrieval;

namespace Serving.Server.Hosting;

/// <summary>Services of the embeddings and retrieval APIs: CLIP models, the text cache, collections.</summary>
public static class RetrievalHostExtensions
{
    public static WebApplicationBuilder AddRetrieval(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<RetrievalOptions>()
            .BindConfiguration(RetrievalOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<RetrievalOptions>, RetrievalOptionsValidator>();
        builder.Services.AddSingleton<ClipEmbedder>();
        builder.Services.AddSingleton<RetrievalService>();
        builder.Services.AddHostedService<RetrievalStartup>();
        return builder;
    }

    /// <summary>
    /// Opens the store and rebuilds the indexes at start, not on the first request. A store that
    /// cannot be opened is logged (at error level, naming the file) by the service and leaves the
    /// server up: chat goes on, the retrieval routes answer 503. A shared store is tried again until it
    /// opens, then followed (the other replicas' writes) until the host stops.
    /// </summary>
    private sealed class RetrievalStartup(RetrievalService service, ILogger<RetrievalStartup> logger) : IHostedService
    {
        private static readonly TimeSpan RetryOpenInterval = TimeSpan.FromSeconds(2);

        private readonly CancellationTokenSource _stopping = new();
        private Task _following = Task.CompletedTask;

        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (service.Unavailable is null)
            {
                logger.LogInformation("Retrieval: {Count} collection(s) loaded from {Location}", service.Count, service.StoreLocation);
            }

            if (service.IsShared)
            {
                _following = Task.Run(() => FollowAsync(_stopping.Token), CancellationToken.None);
            }

            return Task.CompletedTask;
        }

        /// <summary>Opens a shared store that was unreachable at start (every 2 s), then follows it until the host stops.</summary>
        private async Task FollowAsync(CancellationToken stopping)
        {
            try
            {
                while (service.Unavailable is not null)
                {
                    await Task.Delay(RetryOpenInterval, stopping);
                    if (service.TryOpen())
                    {
                        logger.LogInformation("Retrieval: {Count} collection(s) loaded from {Location}", service.Count, service.StoreLocation);
                    }
                }

                await service.Follower!.FollowAsync(stopping);
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                // stopping
            }
        }

        public async Task StopAsync(CancellationToken cancellationToken)
        {
            await _stopping.CancelAsync();
            await _following.WaitAsync(cancellationToken);
        }
    }
}
