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
        builder.Services.AddSingleton<ClipEmbedder>();
        builder.Services.AddSingleton<RetrievalService>();
        builder.Services.AddHostedService<RetrievalStartup>();
        return builder;
    }

    /// <summary>
    /// Opens the store and rebuilds the indexes at start, not on the first request. A store that
    /// cannot be opened is logged (at error level, naming the file) by the service and leaves the
    /// server up: chat goes on, the retrieval routes answer 503.
    /// </summary>
    private sealed class RetrievalStartup(RetrievalService service, ILogger<RetrievalStartup> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            if (service.Unavailable is null)
            {
                logger.LogInformation("Retrieval: {Count} collection(s) loaded from {Path}", service.Count, service.StorePath);
            }

            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
