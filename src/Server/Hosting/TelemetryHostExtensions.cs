using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Telemetry;
using Serving.Server.Http;

namespace Serving.Server.Hosting;

/// <summary>
/// OpenTelemetry in one place (the ServiceDefaults pattern): Serving's Meter and ActivitySource
/// (src/Runtime/Telemetry), ASP.NET Core and HttpClient instrumentation, the Prometheus scrape
/// endpoint <c>/metrics</c>, OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set, and logs that
/// carry the trace id.
/// </summary>
public static class TelemetryHostExtensions
{
    public const string MetricsPath = "/metrics";

    public static WebApplicationBuilder AddServingTelemetry(this WebApplicationBuilder builder)
    {
        builder.Services.AddOptions<TelemetryOptions>().BindConfiguration(TelemetryOptions.Section);
        var options = builder.Configuration.GetSection(TelemetryOptions.Section).Get<TelemetryOptions>() ?? new TelemetryOptions();
        builder.Services.AddSingleton(services => new ServingTelemetry(services.GetRequiredService<IMeterFactory>(), SparseKernels.KernelIsa()));
        builder.Logging.Configure(logging => logging.ActivityTrackingOptions =
            ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);
        if (options.JsonLogs)
        {
            // Scopes carry TraceId/SpanId, so each line can be joined to its trace.
            builder.Logging.AddJsonConsole(json =>
            {
                json.IncludeScopes = true;
                json.UseUtcTimestamp = true;
                json.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            });
        }

        if (!options.Enabled)
        {
            return builder;
        }

        OpenTelemetryBuilder otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService("serving"))
            .WithMetrics(metrics => metrics
                .AddMeter(TelemetryNames.Source)
                .AddAspNetCoreInstrumentation()
                .AddHttpClientInstrumentation()
                .AddPrometheusExporter(prometheus => prometheus.ScrapeResponseCacheDurationMilliseconds = 0))
            .WithTracing(tracing => tracing
                .AddSource(TelemetryNames.Source)
                .AddAspNetCoreInstrumentation(aspNet => aspNet.Filter = context => !IsHousekeeping(context.Request.Path))
                .AddHttpClientInstrumentation());
        if (!string.IsNullOrEmpty(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            // Traces, metrics and logs; endpoint, protocol, headers and timeouts come from the OTEL_* variables.
            builder.Logging.AddOpenTelemetry(logging => logging.IncludeScopes = true);
            otel.UseOtlpExporter();
        }

        return builder;
    }

    public static WebApplication UseServingTelemetry(this WebApplication app)
    {
        if (app.Services.GetRequiredService<IOptions<TelemetryOptions>>().Value.Enabled)
        {
            // vLLM's names for fleet routers, after the exporter's text (OpenTelemetry cannot name them).
            app.UseMiddleware<VllmMetricsMiddleware>();
            app.MapPrometheusScrapingEndpoint(MetricsPath);
        }

        return app;
    }

    /// <summary>Scrapes, probes and the status page's polling: traced, they would drown the requests that matter.</summary>
    private static bool IsHousekeeping(PathString path) =>
        path.StartsWithSegments(MetricsPath) || path.StartsWithSegments("/health") || path.StartsWithSegments("/dashboard");
}
