using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Mvc.Testing;
using SkiaSharp;

namespace Serving.Server.Tests.Apis;

/// <summary>The server in memory over its own temporary data directory (demo models included).</summary>
public sealed class InMemoryServer : IDisposable
{
    public InMemoryServer(string? dataDirectory = null, params (string Key, string Value)[] settings)
    {
        DataDirectory = dataDirectory ?? Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        Factory = new SerialHostFactory().WithWebHostBuilder(host =>
        {
            host.UseSetting("Serving:DataDirectory", DataDirectory);
            foreach (var (key, value) in settings)
            {
                host.UseSetting(key, value);
            }
        });
        Client = Factory.CreateClient();
    }

    public string DataDirectory { get; }

    public WebApplicationFactory<Program> Factory { get; }

    public HttpClient Client { get; }

    public async Task<(int Status, JsonObject Body)> PostAsync(string path, JsonObject body)
    {
        using HttpResponseMessage response = await Client.PostAsJsonAsync(path, body);
        return ((int)response.StatusCode, (await response.Content.ReadFromJsonAsync<JsonObject>())!);
    }

    public async Task<(int Status, JsonObject Body)> SendAsync(HttpMethod method, string path)
    {
        using HttpResponseMessage response = await Client.SendAsync(new HttpRequestMessage(method, path));
        return ((int)response.StatusCode, (await response.Content.ReadFromJsonAsync<JsonObject>())!);
    }

    /// <summary>A solid-colour PNG with a little gradient, as a data URL.</summary>
    public static string ImageUrl(SKColor colour, int width = 64, int height = 48) =>
        "data:image/png;base64," + Convert.ToBase64String(Png(colour, width, height));

    public static byte[] Png(SKColor colour, int width = 64, int height = 48)
    {
        using var bitmap = new SKBitmap(width, height);
        for (int y = 0; y < height; y++)
        {
            for (int x = 0; x < width; x++)
            {
                bitmap.SetPixel(x, y, new SKColor((byte)Math.Min(255, colour.Red + x), colour.Green, (byte)Math.Min(255, colour.Blue + y)));
            }
        }

        using SKData data = bitmap.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }

    /// <summary>Asserts the OpenAI error shape and returns its <c>param</c>.</summary>
    public static string? AssertError((int Status, JsonObject Body) response, int status)
    {
        Assert.Equal(status, response.Status);
        JsonObject error = response.Body["error"]!.AsObject();
        Assert.False(string.IsNullOrEmpty(error["message"]!.GetValue<string>()));
        Assert.Equal(status >= 500 ? "server_error" : "invalid_request_error", error["type"]!.GetValue<string>());
        return error["param"]?.GetValue<string>();
    }

    public void Dispose()
    {
        Client.Dispose();
        Factory.Dispose();
        Microsoft.Data.Sqlite.SqliteConnection.ClearAllPools();
        if (Directory.Exists(DataDirectory))
        {
            Directory.Delete(DataDirectory, recursive: true);
        }
    }
}
