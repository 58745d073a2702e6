using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Tests.Devices;

public class ExecutionDeviceTests
{
    [Theory]
    [InlineData(null, DeviceKind.Auto, 0, "auto")]
    [InlineData("", DeviceKind.Auto, 0, "auto")]
    [InlineData(" Auto ", DeviceKind.Auto, 0, "auto")]
    [InlineData("cpu", DeviceKind.Cpu, 0, "cpu")]
    [InlineData("cuda", DeviceKind.Cuda, 0, "cuda:0")]
    [InlineData("CUDA:3", DeviceKind.Cuda, 3, "cuda:3")]
    public void RequestsParseTheirTextForms(string? text, DeviceKind kind, int ordinal, string canonical)
    {
        DeviceRequest request = DeviceRequest.Parse(text);
        Assert.Equal(new DeviceRequest(kind, ordinal), request);
        Assert.Equal(canonical, request.ToString());
    }

    [Theory]
    [InlineData("gpu")]
    [InlineData("cuda:")]
    [InlineData("cuda:-1")]
    [InlineData("cuda:x")]
    [InlineData("cuda0")]
    public void OtherTextIsRefusedNamingTheForms(string text)
    {
        var error = Assert.Throws<ArgumentException>(() => DeviceRequest.Parse(text));
        Assert.StartsWith($"device '{text}' is not auto, cpu, cuda or cuda:N", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CpuNeverProbesCuda()
    {
        ExecutionDevice device = ExecutionDevice.Select(DeviceRequest.Parse("cpu"), _ => throw new InvalidOperationException("probed"));
        Assert.Same(ExecutionDevice.Cpu, device);
        Assert.Equal("cpu", device.Name);
        Assert.Null(device.FallbackReason);
    }

    [Fact]
    public void AutoTakesCudaDeviceZeroWhenItCanRun()
    {
        var asked = new List<int>();
        ExecutionDevice device = ExecutionDevice.Select(DeviceRequest.Auto, ordinal => { asked.Add(ordinal); return null; });
        Assert.Equal([0], asked);
        Assert.True(device.IsCuda);
        Assert.Equal("cuda:0", device.Name);
        Assert.Equal("models run on cuda:0", device.Describe());
    }

    [Fact]
    public void AutoFallsBackToTheCpuKeepingTheReason()
    {
        ExecutionDevice device = ExecutionDevice.Select(DeviceRequest.Auto, _ => "libcublasLt.so.13 not found");
        Assert.Equal("cpu", device.Name);
        Assert.Equal("libcublasLt.so.13 not found", device.FallbackReason);
        Assert.Equal("models run on the CPU: CUDA is not available (libcublasLt.so.13 not found)", device.Describe());
    }

    [Fact]
    public void CudaThatCannotRunFailsWithTheReason()
    {
        var error = Assert.Throws<DeviceUnavailableException>(() =>
            ExecutionDevice.Select(DeviceRequest.Parse("cuda:2"), ordinal => ordinal == 2 ? "device 2 does not exist (the driver reports 1)" : null));
        Assert.Equal("device cuda:2 cannot run: device 2 does not exist (the driver reports 1)", error.Message);
        Assert.Equal("cuda:1", ExecutionDevice.Select(DeviceRequest.Parse("cuda:1"), _ => null).Name);
    }

    [Fact]
    public void TheTestBuildsCpuPackageHasNoCudaProviderAndSaysSo()
    {
        // The test suite builds with ONNX Runtime's CPU package (the default): its CUDA entry point is absent.
        Assert.Equal(
            "this build's ONNX Runtime package has no CUDA provider (the CPU package; build with -p:OnnxRuntimePackage=Microsoft.ML.OnnxRuntime.Gpu.Linux)",
            CudaProbe.WhyNot(0));
        using var options = new SessionOptions();
        ExecutionDevice.Cpu.Apply(options);  // the CPU adds no provider, so nothing throws
    }

    [Fact]
    public void OurKernelsSayWhyTheyCannotRunOnCuda()
    {
        string reason = SparseKernels.CudaWhyNot(0);
        if (File.Exists("/proc/driver/nvidia/version"))
        {
            // A driver: only an old device or a build without clang's PTX can stop the kernels.
            Assert.True(reason.Length == 0 || reason.Contains("sm_", StringComparison.Ordinal) || reason.Contains("PTX", StringComparison.Ordinal), reason);
        }
        else
        {
            Assert.Equal("no CUDA driver: cannot open libcuda.so.1 (libcuda.so.1: cannot open shared object file: No such file or directory)", reason);
        }
    }

    [Fact]
    public void TheProbeNamesTheMissingCudaLibraries()
    {
        IReadOnlyList<string> missing = CudaProbe.MissingLibraries();
        Assert.Subset(CudaProbe.RequiredLibraries.ToHashSet(), missing.ToHashSet());
        Assert.Equal(File.Exists("/proc/driver/nvidia/version"), !missing.Contains("libcuda.so.1"));
    }
}
