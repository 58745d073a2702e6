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

    /// <summary>Opens the store and rebuilds the indexes at start, not on the first request.</summary>
    private sealed class RetrievalStartup(RetrievalService service, ILogger<RetrievalStartup> logger) : IHostedService
    {
        public Task StartAsync(CancellationToken cancellationToken)
        {
            logger.LogInformation("Retrieval: {Count} collection(s) loaded", service.Collections.Count());
            return Task.CompletedTask;
        }

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
