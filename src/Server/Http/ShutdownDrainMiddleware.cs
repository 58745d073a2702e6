using Serving.Server.Hosting;

namespace Serving.Server.Http;

/// <summary>
/// Counts the requests running for <see cref="ShutdownDrain"/> and, once the host is stopping, answers new ones 503
/// <c>shutting_down</c> with <c>Connection: close</c>. The probes and <c>/metrics</c> pass uncounted: liveness stays 200,
/// readiness says <c>draining</c>, and the last scrape still sees the drain.
/// </summary>
public sealed class ShutdownDrainMiddleware(RequestDelegate next, ShutdownDrain drain)
{
    public const string Code = "shutting_down";

    public async Task InvokeAsync(HttpContext context)
    {
        if (context.Request.Path.StartsWithSegments("/health") || context.Request.Path.StartsWithSegments("/metrics"))
        {
            await next(context);
            return;
        }

        if (!drain.TryEnter())
        {
            context.Response.Headers.Connection = "close";
            await OpenAiErrors.Create(StatusCodes.Status503ServiceUnavailable,
                "The server is shutting down and takes no new requests; retry on another replica.", null, Code).ExecuteAsync(context);
            return;
        }

        try
        {
            await next(context);
        }
        finally
        {
            drain.Exit();
        }
    }
}
