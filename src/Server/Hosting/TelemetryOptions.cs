namespace Serving.Server.Hosting;

/// <summary>
/// The <c>Serving:Telemetry</c> section. The OpenTelemetry SDK's own settings (service name,
/// OTLP endpoint, protocol, headers, sampler) are the standard <c>OTEL_*</c> environment variables.
/// </summary>
public sealed class TelemetryOptions
{
    public const string Section = "Serving:Telemetry";

    /// <summary>Metrics, traces, <c>/metrics</c> and the status page's data; false turns all of them off (benchmarks of the overhead).</summary>
    public bool Enabled { get; init; } = true;

    /// <summary>Logs as one JSON object per line with the trace and span ids (for log collectors); false keeps the human console format.</summary>
    public bool JsonLogs { get; init; }
}
