namespace Serving.Server.Tests.Telemetry;

/// <summary>
/// Telemetry tests run alone, after the parallel ones: every host in the process creates a Meter
/// named "Serving", and OpenTelemetry's MeterProvider subscribes by name, so a second live server
/// would own the instruments that a scrape of the first one reads.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class TelemetryCollection
{
    public const string Name = "Telemetry";
}
