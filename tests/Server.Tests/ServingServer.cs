using System.Net.Http.Json;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Serving.Runtime.Generation;
using Serving.Server.Hosting;

namespace Serving.Server.Tests;

/// <summary>
/// The server on a real Kestrel socket on 127.0.0.1 (a free port), serving the tiny demo model
/// from a data directory of its own. Subclasses set limits through configuration.
/// </summary>
public class ServingServer : SerialHostFactory
{
    private readonly string _data = Path.Combine(Path.GetTempPath(), "serving-server-tests-" + Guid.NewGuid().ToString("N"));

    public ServingServer()
    {
        UseKestrel(0);
        StartServer();
        string address = Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        BaseAddress = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal).Replace("localhost", "127.0.0.1", StringComparison.Ordinal) + "/");
        WaitUntilReady();
    }

    public Uri BaseAddress { get; }

    public Engine Engine => Services.GetRequiredService<DecoderHost>().Find("tiny")!;

    /// <summary>The running host, for tests of shutdown (<c>StopAsync</c>).</summary>
    public IHost Host { get; private set; } = null!;

    protected override IHost CreateHost(IHostBuilder builder)
    {
        Host = base.CreateHost(builder);
        return Host;
    }

    protected virtual IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseSetting("urls", "http://127.0.0.1:0");
        builder.UseSetting("Serving:DataDirectory", _data);
        builder.UseSetting("Serving:MaxRequestBodyBytes", "65536");
        foreach (var (key, value) in Settings)
        {
            builder.UseSetting(key, value);
        }
    }

    public HttpClient Client() => new() { BaseAddress = BaseAddress, Timeout = TimeSpan.FromSeconds(120) };

    private void WaitUntilReady()
    {
        using HttpClient client = Client();
        for (int attempt = 0; attempt < 300; attempt++)
        {
            using HttpResponseMessage response = client.GetAsync("health/ready").GetAwaiter().GetResult();
            if (response.IsSuccessStatusCode)
            {
                return;
            }

            Thread.Sleep(100);
        }

        throw new TimeoutException("the server did not become ready in 30 s");
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing && Directory.Exists(_data))
        {
            Directory.Delete(_data, recursive: true);
        }
    }
}

/// <summary>Reads an OpenAI error body.</summary>
public static class OpenAiErrorReader
{
    public sealed record Body(Error Error);

    public sealed record Error(string Message, string Type, string? Param, string? Code);

    public static async Task<Error> Read(HttpResponseMessage response) =>
        (await response.Content.ReadFromJsonAsync<Body>())!.Error;
}
