using System.Text.Json;

namespace Serving.Server.Http;

/// <summary>
/// OpenAI's streaming format (REFERENCE §4): <c>data: {json}\n\n</c> per event, no
/// <c>event:</c> lines, <c>data: [DONE]\n\n</c> last. Each event is flushed so a token
/// reaches the client when it is made.
/// </summary>
public static class ServerSentEvents
{
    private static readonly byte[] Prefix = "data: "u8.ToArray();
    private static readonly byte[] Suffix = "\n\n"u8.ToArray();
    private static readonly byte[] Done = "data: [DONE]\n\n"u8.ToArray();

    public static void Start(HttpResponse response)
    {
        response.StatusCode = StatusCodes.Status200OK;
        response.ContentType = "text/event-stream";
        response.Headers.CacheControl = "no-cache";
        // Tells nginx-style proxies not to buffer the stream.
        response.Headers["X-Accel-Buffering"] = "no";
    }

    public static async Task WriteAsync<T>(HttpResponse response, T payload, JsonSerializerOptions options, CancellationToken cancellation)
    {
        await response.Body.WriteAsync(Prefix, cancellation);
        await JsonSerializer.SerializeAsync(response.Body, payload, options, cancellation);
        await response.Body.WriteAsync(Suffix, cancellation);
        await response.Body.FlushAsync(cancellation);
    }

    public static async Task WriteDoneAsync(HttpResponse response, CancellationToken cancellation)
    {
        await response.Body.WriteAsync(Done, cancellation);
        await response.Body.FlushAsync(cancellation);
    }
}
