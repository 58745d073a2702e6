using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Tests.Generation.Kv;

public sealed class KvPoolTests
{
    private static ExecutionDevice Cuda0 { get; } = ExecutionDevice.Select(DeviceRequest.Parse("cuda:0"), _ => null);

    public static TheoryData<string> Kinds => ["host", "staged"];

    private static KvPool Pool(string kind, long bytes) => kind == "host" ? new HostKvPool(bytes) : new StagedKvPool(bytes);

    [Theory]
    [MemberData(nameof(Kinds))]
    public void CopiesLandWhereAskedAndRoundTripThroughTheHost(string kind)
    {
        using KvPool pool = Pool(kind, 1024);
        byte[] bytes = [.. Enumerable.Range(0, 1024).Select(i => (byte)i)];
        pool.Write(0, bytes);
        pool.Copy(256, 768, 256);
        var read = new byte[1024];
        pool.Read(0, read);
        Assert.Equal(bytes[..768], read[..768]);
        Assert.Equal(bytes[256..512], read[768..]);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void RangesOutsideThePoolAndOverlappingCopiesAreRefused(string kind)
    {
        using KvPool pool = Pool(kind, 1024);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Read(1000, new byte[64]));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Write(-1, new byte[4]));
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Copy(0, 1000, 64));
        Assert.Throws<ArgumentException>(() => pool.Copy(0, 32, 64));
        pool.Copy(0, 64, 64);
    }

    [Fact]
    public void TheCpuGetsAHostPoolWithTheCpusMemoryInfo()
    {
        using KvPool pool = KvPool.Allocate(ExecutionDevice.Cpu, 4096);
        Assert.IsType<HostKvPool>(pool);
        Assert.Equal(OrtMemoryInfo.DefaultInstance.Name, pool.MemoryInfo.Name);
        Assert.Equal(0, pool.Pointer % 64);
    }

    [Fact]
    public void ACudaPoolIsDeviceMemoryOrRefusedSayingWhy()
    {
        // Where no driver or device is (every CI machine), the pool is refused with the driver's reason;
        // on a GPU (benchmarks/gpu/check.sh), it is device memory that round-trips through the host.
        string whyNot = SparseKernels.CudaWhyNot(0);
        if (whyNot.Length > 0)
        {
            var e = Assert.Throws<DeviceUnavailableException>(() => new CudaKvPool(Cuda0, 4096));
            Assert.Contains("cannot allocate the KV pool (4096 bytes) on cuda:0", e.Message);
            Assert.Contains(whyNot, e.Message);
            return;
        }

        using var pool = new CudaKvPool(Cuda0, 1024);
        Assert.Equal("Cuda", pool.MemoryInfo.Name);
        Assert.Equal("cuda:0", pool.Device.Name);
        byte[] bytes = [.. Enumerable.Range(0, 1024).Select(i => (byte)(i * 7))];
        pool.Write(0, bytes);
        pool.Copy(0, 512, 256);
        var read = new byte[1024];
        pool.Read(0, read);
        Assert.Equal(bytes[..512], read[..512]);
        Assert.Equal(bytes[..256], read[512..768]);
        Assert.Throws<ArgumentOutOfRangeException>(() => pool.Read(1000, new byte[64]));
    }

    [Fact]
    public void ACudaPoolForTheCpuIsRefused()
    {
        Assert.Throws<ArgumentException>(() => new CudaKvPool(ExecutionDevice.Cpu, 4096));
    }
}
