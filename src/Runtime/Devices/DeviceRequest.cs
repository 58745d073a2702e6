using System.Globalization;

namespace Serving.Runtime.Devices;

/// <summary>The kinds of device a model can run on.</summary>
public enum DeviceKind
{
    /// <summary>CUDA when it can run here, else the CPU (with the reason logged once).</summary>
    Auto,
    Cpu,
    Cuda,
}

/// <summary>
/// What the configuration asks for (<c>Serving:Device</c>, the CLI's <c>--device</c>): <c>auto</c>
/// (the default), <c>cpu</c>, <c>cuda</c> (device 0) or <c>cuda:N</c>.
/// </summary>
public readonly record struct DeviceRequest(DeviceKind Kind, int Ordinal)
{
    public static DeviceRequest Auto => new(DeviceKind.Auto, 0);

    /// <summary>Parses the text form; null or empty is <c>auto</c>.</summary>
    /// <exception cref="ArgumentException">Not one of the forms above.</exception>
    public static DeviceRequest Parse(string? text)
    {
        string value = text?.Trim().ToLowerInvariant() ?? "";
        if (value is "" or "auto")
        {
            return Auto;
        }

        if (value == "cpu")
        {
            return new DeviceRequest(DeviceKind.Cpu, 0);
        }

        if (value == "cuda")
        {
            return new DeviceRequest(DeviceKind.Cuda, 0);
        }

        if (value.StartsWith("cuda:", StringComparison.Ordinal)
            && int.TryParse(value.AsSpan(5), NumberStyles.None, CultureInfo.InvariantCulture, out int ordinal))
        {
            return new DeviceRequest(DeviceKind.Cuda, ordinal);
        }

        throw new ArgumentException($"device '{text}' is not auto, cpu, cuda or cuda:N (N a device number)", nameof(text));
    }

    public override string ToString() => Kind switch
    {
        DeviceKind.Auto => "auto",
        DeviceKind.Cpu => "cpu",
        _ => $"cuda:{Ordinal}",
    };
}
