// Times the calls telemetry adds to the engine and the request path, with the OpenTelemetry SDK
// aggregating Serving's metrics and recording its spans (as in the server), and counts the
// bytes they allocate. Usage: telemetry-overhead-bench [ITERATIONS=2000000]
using System.Diagnostics;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;
using Serving.Runtime.Generation;
using Serving.Runtime.Telemetry;

int iterations = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 2_000_000;
using var telemetry = new ServingTelemetry(sparseIsa: "avx2");
using MeterProvider meters = Sdk.CreateMeterProviderBuilder().AddMeter(TelemetryNames.Source)
    .AddReader(new PeriodicExportingMetricReader(new NullExporter(), exportIntervalMilliseconds: 1000)).Build();
using TracerProvider tracer = Sdk.CreateTracerProviderBuilder().AddSource(TelemetryNames.Source).Build();

EngineTelemetry engine = telemetry.ForEngine("bench");
var token = new GenerationEvent(42, "a", 0, null, null, default);
using GenAiOperation operation = telemetry.StartOperation("text_completion", "bench");

Measure("EngineTelemetry.DecodeStep (per decode step)", iterations, () => engine.DecodeStep(8));
Measure("GenAiOperation.OnEvent (per token)", iterations, () => operation.OnEvent(token));
Measure("request span + request metrics (per API call)", iterations / 100, () =>
{
    using GenAiOperation call = telemetry.StartOperation("text_completion", "bench");
    call.Submitted(12, 1, 64, 0, null);
    call.OnEvent(token);
});
Measure("KvEvicted (per eviction event)", iterations, () => engine.KvEvicted(null, "triattention", 128));

static void Measure(string name, int count, Action action)
{
    for (int i = 0; i < 10_000; i++)
    {
        action();
    }

    long allocated = GC.GetAllocatedBytesForCurrentThread();
    long start = Stopwatch.GetTimestamp();
    for (int i = 0; i < count; i++)
    {
        action();
    }

    double ns = Stopwatch.GetElapsedTime(start).TotalNanoseconds / count;
    double bytes = (double)(GC.GetAllocatedBytesForCurrentThread() - allocated) / count;
    Console.WriteLine($"{name,-50} {ns,8:F1} ns/call  {bytes,8:F1} B/call");
}

internal sealed class NullExporter : BaseExporter<Metric>
{
    public override ExportResult Export(in Batch<Metric> batch) => ExportResult.Success;
}
