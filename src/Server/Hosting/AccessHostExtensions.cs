using System.Globalization;
using System.Threading.RateLimiting;
using Microsoft.AspNetCore.Cors.Infrastructure;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;
using Serving.Server.Http;
using Swashbuckle.AspNetCore.SwaggerGen;

namespace Serving.Server.Hosting;

/// <summary>Who may call the server: CORS origins, API keys and their rate limits (README, "API keys").</summary>
public static class AccessHostExtensions
{
    public static IServiceCollection AddServingAccess(this IServiceCollection services)
    {
        services.AddSingleton(provider => ApiKeySet.Create(
            provider.GetRequiredService<IOptions<ServingOptions>>().Value,
            provider.GetRequiredService<ILoggerFactory>().CreateLogger(nameof(ApiKeySet))));

        // One default policy, only when origins are configured: without it UseCors adds no header, and browsers block cross-origin reads.
        services.AddCors();
        services.AddOptions<CorsOptions>().Configure<IOptions<ServingOptions>>((cors, serving) =>
        {
            if (serving.Value.Cors.AllowedOrigins is { Count: > 0 } origins)
            {
                cors.AddDefaultPolicy(policy => policy.WithOrigins([.. origins]).AllowAnyHeader().AllowAnyMethod().WithExposedHeaders("Retry-After"));
            }
        });

        services.AddRateLimiter(_ => { });
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<ServingOptions>>((limiter, serving) =>
        {
            int perMinute = serving.Value.RateLimit.RequestsPerMinute;
            if (perMinute > 0)
            {
                limiter.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
                limiter.GlobalLimiter = PartitionedRateLimiter.Create<HttpContext, int>(context => Partition(context, perMinute));
                limiter.OnRejected = (rejected, _) => new ValueTask(Reject(rejected.HttpContext, rejected.Lease, perMinute));
            }
        });
        return services;
    }

    /// <summary>After the error middleware (so refusals take the OpenAI shape) and before anything reads a body.</summary>
    public static WebApplication UseServingAccess(this WebApplication app)
    {
        // Before the key check: a browser's preflight carries no Authorization header.
        app.UseCors();
        app.UseMiddleware<ApiKeyMiddleware>();
        app.UseRateLimiter();
        return app;
    }

    /// <summary>The bearer scheme in the OpenAPI document, for every operation but the health probes (and Swagger UI's Authorize button).</summary>
    public static void AddBearerKey(this SwaggerGenOptions swagger)
    {
        swagger.AddSecurityDefinition(BearerScheme, new OpenApiSecurityScheme
        {
            Type = SecuritySchemeType.Http,
            Scheme = "bearer",
            Description = "One of the server's API keys (Serving:ApiKeys, Serving:ApiKeysFile); a server without keys needs none.",
        });
        swagger.OperationFilter<BearerKeyFilter>();
    }

    private const string BearerScheme = "bearer";

    private sealed class BearerKeyFilter : IOperationFilter
    {
        public void Apply(OpenApiOperation operation, OperationFilterContext context)
        {
            if (context.ApiDescription.RelativePath?.StartsWith("health/", StringComparison.OrdinalIgnoreCase) != true)
            {
                operation.Security = [new OpenApiSecurityRequirement { [new OpenApiSecuritySchemeReference(BearerScheme, context.Document)] = [] }];
            }
        }
    }

    /// <summary>Each key its own one-minute window; requests without a key (keys off, or the open paths) are not limited.</summary>
    private static RateLimitPartition<int> Partition(HttpContext context, int perMinute) =>
        context.Features.Get<ApiKeyFeature>() is { } key
            ? RateLimitPartition.GetFixedWindowLimiter(key.KeyIndex, _ => new FixedWindowRateLimiterOptions
            {
                PermitLimit = perMinute,
                Window = TimeSpan.FromMinutes(1),
                QueueLimit = 0,
            })
            : RateLimitPartition.GetNoLimiter(-1);

    private static Task Reject(HttpContext context, RateLimitLease lease, int perMinute)
    {
        int seconds = lease.TryGetMetadata(MetadataName.RetryAfter, out TimeSpan retryAfter) ? Math.Max(1, (int)Math.Ceiling(retryAfter.TotalSeconds)) : 60;
        context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
        return OpenAiErrors.Create(StatusCodes.Status429TooManyRequests,
            $"This API key has made its {perMinute} requests of this minute (Serving:RateLimit:RequestsPerMinute). Retry after the number of seconds in the Retry-After header.",
            null, "rate_limit_exceeded").ExecuteAsync(context);
    }
}
