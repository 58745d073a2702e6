using System.Net.Sockets;
using System.Text;
using System.Text.Json.Nodes;

namespace Serving.Server.Tests;

/// <summary>
/// Requests the way a hostile client writes them: the request target byte for byte (HttpClient
/// would remove dot segments) or a body of raw bytes. Answers are (status, JSON body or null).
/// </summary>
public static class RawHttp
{
    /// <summary>One HTTP/1.0 request (so the answer is not chunked) over a new socket, with <paramref name="target"/> sent as given.</summary>
    public static async Task<(int Status, JsonObject? Body)> SendAsync(Uri server, string method, string target)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(server.Host, server.Port);
        using NetworkStream stream = client.GetStream();
        string request = $"{method} {target} HTTP/1.0\r\nHost: {server.Authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        string response = await reader.ReadToEndAsync();
        int status = int.Parse(response.Split(' ', 3)[1], System.Globalization.CultureInfo.InvariantCulture);
        int start = response.IndexOf("\r\n\r\n", StringComparison.Ordinal) + 4;
        string body = response[start..];
        return (status, body.TrimStart().StartsWith('{') ? JsonNode.Parse(body)!.AsObject() : null);
    }

    /// <summary>POSTs <paramref name="body"/> unchanged with the given content type.</summary>
    public static async Task<(int Status, JsonObject? Body)> PostAsync(HttpClient client, string path, byte[] body, string contentType = "application/json")
    {
        using var content = new ByteArrayContent(body);
        content.Headers.TryAddWithoutValidation("Content-Type", contentType);
        using HttpResponseMessage response = await client.PostAsync(path, content);
        string text = await response.Content.ReadAsStringAsync();
        return ((int)response.StatusCode, text.TrimStart().StartsWith('{') ? JsonNode.Parse(text)!.AsObject() : null);
    }

    public static Task<(int Status, JsonObject? Body)> PostAsync(HttpClient client, string path, string body, string contentType = "application/json") =>
        PostAsync(client, path, Encoding.UTF8.GetBytes(body), contentType);

    /// <summary>Asserts the OpenAI error shape with this status; returns <c>param</c>.</summary>
    public static string? AssertError((int Status, JsonObject? Body) response, int status)
    {
        Assert.True(response.Body is not null, $"HTTP {response.Status} without a JSON body");
        return Apis.InMemoryServer.AssertError((response.Status, response.Body), status);
    }
}
