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

        builder.Services.ConfigureHttpJsonOptions(json => json.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower);
        // Malformed bodies throw BadHttpRequestException, which OpenAiErrorMiddleware turns into a 400 naming the field.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(routes => routes.ThrowOnBadRequest = true);
        builder.Services.AddSingleton<DecoderHost>();
        builder.Services.AddHostedService(services => services.GetRequiredService<DecoderHost>());
        builder.Services.AddSingleton<Apis.OpenAi.GenerationEndpoint>();
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
