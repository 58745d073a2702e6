using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Devices;

/// <summary>
/// Where this process runs its models, chosen once at start from a <see cref="DeviceRequest"/>
/// (<see cref="Select"/>); <see cref="Name"/> is what <c>/v1/models</c>, the status page and
/// the metrics report.
/// </summary>
public sealed record ExecutionDevice
{
    private ExecutionDevice(DeviceKind kind, int ordinal, string? fallbackReason) =>
        (Kind, Ordinal, FallbackReason) = (kind, ordinal, fallbackReason);

    public static ExecutionDevice Cpu { get; } = new(DeviceKind.Cpu, 0, null);

    /// <summary><see cref="DeviceKind.Cpu"/> or <see cref="DeviceKind.Cuda"/>, never Auto.</summary>
    public DeviceKind Kind { get; }

    public int Ordinal { get; }

    /// <summary>Why <c>auto</c> fell back to the CPU; null when nothing fell back.</summary>
    public string? FallbackReason { get; }

    public bool IsCuda => Kind == DeviceKind.Cuda;

    /// <summary><c>cpu</c> or <c>cuda:N</c>.</summary>
    public string Name => IsCuda ? $"cuda:{Ordinal}" : "cpu";

    /// <summary>
    /// The device for <paramref name="request"/>. <paramref name="whyNotCuda"/> answers why CUDA device N
    /// cannot run our models, or null when it can (<see cref="CudaProbe.WhyNot"/>; tests pass their own).
    /// </summary>
    /// <exception cref="DeviceUnavailableException"><c>cuda</c> was asked for and cannot run.</exception>
    public static ExecutionDevice Select(DeviceRequest request, Func<int, string?> whyNotCuda)
    {
        if (request.Kind == DeviceKind.Cpu)
        {
            return Cpu;
        }

        string? reason = whyNotCuda(request.Ordinal);
        if (reason is null)
        {
            return new ExecutionDevice(DeviceKind.Cuda, request.Ordinal, null);
        }

        if (request.Kind == DeviceKind.Cuda)
        {
            throw new DeviceUnavailableException($"device {request} cannot run: {reason}");
        }

        return new ExecutionDevice(DeviceKind.Cpu, 0, reason);
    }

    /// <summary>One line for the log: the device, and for a fallback its reason.</summary>
    public string Describe() => FallbackReason is null ? $"models run on {Name}" : $"models run on the CPU: CUDA is not available ({FallbackReason})";

    /// <summary>
    /// Adds the execution provider to a session's options (CUDA for cuda:N; the CPU needs none). TF32
    /// is off, as PyTorch (and so vLLM) leaves it for matmuls: an fp32 model computes in fp32, and its
    /// greedy output on the GPU is the CPU's up to fp32 rounding. Faster GPU runs use fp16 or 4-bit files.
    /// </summary>
    public void Apply(SessionOptions options)
    {
        if (IsCuda)
        {
            using var cuda = new OrtCUDAProviderOptions();
            cuda.UpdateOptions(new Dictionary<string, string>
            {
                ["device_id"] = Ordinal.ToString(System.Globalization.CultureInfo.InvariantCulture),
                ["use_tf32"] = "0",
            });
            options.AppendExecutionProvider_CUDA(cuda);
        }
    }
}

/// <summary>The configuration asked for a device that cannot run here; the message says why.</summary>
public sealed class DeviceUnavailableException(string message) : Exception(message);
