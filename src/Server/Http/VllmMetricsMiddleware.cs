using System.Text;
using Serving.Runtime.Telemetry;
using Serving.Server.Hosting;

namespace Serving.Server.Http;

/// <summary>
/// Appends vLLM's metric names (<see cref="VllmMetrics"/>) to the Prometheus exporter's
/// <c>/metrics</c> response: buffers the exporter's text, then writes it with the vLLM families
/// before OpenMetrics' closing <c># EOF</c>. The scrape text is tens of kilobytes, so the buffer
/// costs little once a scrape (every 15 s); the response goes uncompressed.
/// </summary>
public sealed class VllmMetricsMiddleware(RequestDelegate next, ServingTelemetry telemetry)
{
    private static readonly byte[] Eof = "# EOF\n"u8.ToArray();

    public async Task InvokeAsync(HttpContext context)
    {
        if (!context.Request.Path.Equals(TelemetryHostExtensions.MetricsPath))
        {
            await next(context);
            return;
        }

        // The exporter gzips its text when asked (Prometheus asks); lines appended to a gzip stream
        // would corrupt it, so ask for plain text: ~50 KB a scrape, every 15 s.
        context.Request.Headers.AcceptEncoding = default;
        Stream body = context.Response.Body;
        using var buffer = new MemoryStream();
        context.Response.Body = buffer;
        try
        {
            await next(context);
        }
        finally
        {
            context.Response.Body = body;
        }

        ReadOnlyMemory<byte> exported = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
        byte[] appended = [];
        if (context.Response.StatusCode == StatusCodes.Status200OK)
        {
            bool openMetrics = context.Response.ContentType?.StartsWith("application/openmetrics-text", StringComparison.Ordinal) == true;
            bool hasEof = exported.Span.EndsWith(Eof);
            if (hasEof)
            {
                exported = exported[..^Eof.Length];
            }

            var text = new StringBuilder();
            VllmMetrics.Write(text, telemetry.VllmSamples(), openMetrics);
            if (hasEof)
            {
                text.Append("# EOF\n");
            }

            appended = Encoding.UTF8.GetBytes(text.ToString());
        }

        context.Response.ContentLength = exported.Length + appended.Length;
        await body.WriteAsync(exported, context.RequestAborted);
        await body.WriteAsync(appended, context.RequestAborted);
    }
}
