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

        builder.Services.ConfigureHttpJsonOptions(json =>
        {
            json.SerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower;
            // Strict as OpenAI is: "max_tokens": "5" is a wrong type, not 5 (the web defaults read numbers from strings),
            // and a key twice is refused (StrictJsonBodyMiddleware finds it first, with the path).
            json.SerializerOptions.NumberHandling = System.Text.Json.Serialization.JsonNumberHandling.Strict;
            json.SerializerOptions.AllowDuplicateProperties = false;
            json.SerializerOptions.TypeInfoResolverChain.Insert(0, Retrieval.RetrievalJson.Default);
            json.SerializerOptions.TypeInfoResolverChain.Insert(0, Apis.OpenAi.OpenAiJson.Default);
        });
        // Swashbuckle describes schemas with MVC's serializer options: the same snake_case names as the wire.
        builder.Services.Configure<Microsoft.AspNetCore.Mvc.JsonOptions>(json => json.JsonSerializerOptions.PropertyNamingPolicy = System.Text.Json.JsonNamingPolicy.SnakeCaseLower);
        // Malformed bodies throw BadHttpRequestException, which OpenAiErrorMiddleware turns into a 400 naming the field.
        builder.Services.Configure<Microsoft.AspNetCore.Routing.RouteHandlerOptions>(routes => routes.ThrowOnBadRequest = true);
        builder.Services.AddEndpointsApiExplorer();
        builder.Services.AddSwaggerGen(swagger =>
        {
            swagger.SwaggerDoc("v1", new Microsoft.OpenApi.OpenApiInfo
            {
                Title = "Serving",
                Version = "v1",
                Description = "OpenAI-compatible inference server for ONNX models (see README.md).",
            });
            swagger.AddBearerKey();
            // Metadata and filters are free-form objects, not the JsonNode class Swashbuckle would describe.
            swagger.MapType<System.Text.Json.Nodes.JsonObject>(() => new Microsoft.OpenApi.OpenApiSchema { Type = Microsoft.OpenApi.JsonSchemaType.Object });
        });
        builder.Services.AddSingleton<ShutdownDrain>();
        builder.Services.AddHostedService(services => services.GetRequiredService<ShutdownDrain>());
        builder.Services.AddOptions<HostOptions>().Configure<IOptions<ServingOptions>>((host, serving) =>
            host.ShutdownTimeout = TimeSpan.FromSeconds(serving.Value.ShutdownDrainSeconds) + ShutdownDrain.StopMargin);
        builder.Services.AddServingAccess();
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
        app.UseMiddleware<ShutdownDrainMiddleware>();
        app.UseServingAccess();
        app.UseMiddleware<DotSegmentMiddleware>();
        app.UseMiddleware<StrictJsonBodyMiddleware>();
        app.UseSwagger();
        app.UseSwaggerUI();
        // Statuses the framework answers without a body (404 route, 405 method, 415 content type) get the OpenAI shape too.
        app.UseStatusCodePages(async pages =>
        {
            HttpResponse response = pages.HttpContext.Response;
            string message = response.StatusCode switch
            {
                StatusCodes.Status404NotFound => $"No route matches {pages.HttpContext.Request.Method} {pages.HttpContext.Request.Path}.",
                StatusCodes.Status405MethodNotAllowed => $"{pages.HttpContext.Request.Method} is not allowed on {pages.HttpContext.Request.Path}.",
                StatusCodes.Status413PayloadTooLarge => OpenAiErrors.TooLargeMessage(pages.HttpContext),
                StatusCodes.Status415UnsupportedMediaType => OpenAiErrors.NotJsonMessage,
                _ => $"The request failed with HTTP status {response.StatusCode}.",
            };
            string? code = response.StatusCode switch
            {
                StatusCodes.Status413PayloadTooLarge => OpenAiErrors.TooLargeCode,
                StatusCodes.Status415UnsupportedMediaType => OpenAiErrors.NotJsonCode,
                _ => null,
            };
            await response.WriteAsJsonAsync(OpenAiErrors.Body(response.StatusCode, message, null, code));
        });
        return app;
    }
}
