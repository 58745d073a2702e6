using Microsoft.Extensions.Options;
using Serving.Server.Http;

namespace Serving.Server.Hosting;

/// <summary>Service registration and middleware of the server, in one place.</summary>
public static class ServingHostExtensions
{
    public static WebApplicationBuilder AddServing(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<ServingOptions>()
            .BindConfiguration(ServingOptions.Section)
            .ValidateDataAnnotations()
            .ValidateOnStart();
        builder.Services.AddSingleton<IValidateOptions<ServingOptions>, ServingOptionsValidator>();

        long maxBody = builder.Configuration.GetSection(ServingOptions.Section).GetValue<long?>(nameof(ServingOptions.MaxRequestBodyBytes))
            ?? new ServingOptions().MaxRequestBodyBytes;
        builder.WebHost.ConfigureKestrel(kestrel => kestrel.Limits.MaxRequestBodySize = maxBody);

        builder.Services.AddSingleton(services => ModelCatalog.Create(
            services.GetRequiredService<IOptions<ServingOptions>>().Value,
            services.GetRequiredService<ILoggerFactory>().CreateLogger(nameof(ModelCatalog))));
        return builder;
    }

    public static WebApplication UseServing(this WebApplication app)
    {
        app.UseMiddleware<OpenAiErrorMiddleware>();
        return app;
    }
}
