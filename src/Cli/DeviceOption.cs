using System.CommandLine;
using Microsoft.Extensions.Logging;
using Serving.Runtime.Devices;

namespace Serving.Cli;

/// <summary><c>--device</c> of the commands that load a decoder: auto (default), cpu, cuda or cuda:N, as <c>Serving:Device</c>.</summary>
internal static class DeviceOption
{
    public static Option<string> Create() => new("--device")
    {
        Description = "Where the model runs: auto (CUDA when it can run here, else the CPU), cpu, cuda or cuda:N",
        DefaultValueFactory = _ => "auto",
    };

    /// <summary>The device for <paramref name="text"/> (<see cref="Log"/> says which, once the command is past its usage checks).</summary>
    /// <exception cref="UsageException">Not a device, or cuda that cannot run here (the message says why).</exception>
    public static ExecutionDevice Select(string text)
    {
        DeviceRequest request;
        try
        {
            request = DeviceRequest.Parse(text);
        }
        catch (ArgumentException e)
        {
            throw new UsageException($"--device: {e.Message}");
        }

        try
        {
            return ExecutionDevice.Select(request, CudaProbe.WhyNot);
        }
        catch (DeviceUnavailableException e)
        {
            throw new UsageException($"--device: {e.Message}");
        }
    }

    /// <summary>The one line saying where the model runs, and under auto why not on CUDA.</summary>
    public static void Log(ILogger logger, string text, ExecutionDevice device) =>
        logger.LogInformation("Device {Request}: {Choice}", DeviceRequest.Parse(text), device.Describe());
}
