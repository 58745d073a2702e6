using System.Diagnostics;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Server.Tests.Hosting;

/// <summary>The server as its own process: <c>--device</c> on its command line, and a CUDA that cannot run stopping the start.</summary>
public sealed class DeviceStartTests : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "serving-device-start-" + Guid.NewGuid().ToString("N"));

    [Fact]
    public async Task CudaThatCannotRunStopsTheStartWithTheReason()
    {
        // The test build has ONNX Runtime's CPU package: cuda can never run, on any machine.
        string model = Path.Combine(_root, "tiny");
        Gemma3ModelWriter.WriteRandom(model, Gemma3Presets.Tiny, seed: 3);
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            WorkingDirectory = AppContext.BaseDirectory,
        };
        foreach (string arg in new[]
                 {
                     Path.Combine(AppContext.BaseDirectory, "Serving.Server.dll"), "--urls", "http://127.0.0.1:0", "--device", "cuda",
                     "--Serving:DataDirectory=" + Path.Combine(_root, "data"), "--Serving:Models:0:Id=tiny", "--Serving:Models:0:Path=" + model,
                 })
        {
            start.ArgumentList.Add(arg);
        }

        using Process server = Process.Start(start)!;
        Task<string> output = server.StandardOutput.ReadToEndAsync(), errors = server.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await server.WaitForExitAsync(timeout.Token);

        string log = await output + await errors;
        Assert.Equal(1, server.ExitCode);
        Assert.Contains("Cannot serve the configured models: device cuda:0 cannot run: this build's ONNX Runtime package has no CUDA provider", log);
    }

    public void Dispose()
    {
        if (Directory.Exists(_root))
        {
            Directory.Delete(_root, recursive: true);
        }
    }
}
