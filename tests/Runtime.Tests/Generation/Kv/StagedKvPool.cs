using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.Generation.Kv;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>
/// A pool the engine can reach only as it reaches device memory: through <see cref="KvPool.Copy"/>,
/// <see cref="KvPool.Read"/> and <see cref="KvPool.Write"/>, never a host span (it is no
/// <see cref="HostKvPool"/>). Its bytes are host memory, so the CPU provider's op still runs over
/// it, and the engine's device path (staged compaction, block copies) runs without a GPU. Counts each kind of copy.
/// </summary>
internal sealed class StagedKvPool(long bytes) : KvPool(bytes)
{
    private readonly HostKvPool _memory = new(bytes);

    public int Copies { get; private set; }

    public int Reads { get; private set; }

    public int Writes { get; private set; }

    public override IntPtr Pointer => _memory.Pointer;

    public override OrtMemoryInfo MemoryInfo => OrtMemoryInfo.DefaultInstance;

    public override ExecutionDevice Device => ExecutionDevice.Cpu;

    public override void Copy(long source, long target, long bytes)
    {
        Copies++;
        _memory.Copy(source, target, bytes);
    }

    public override void Read(long offset, Span<byte> target)
    {
        Reads++;
        _memory.Read(offset, target);
    }

    public override void Write(long offset, ReadOnlySpan<byte> source)
    {
        Writes++;
        _memory.Write(offset, source);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _memory.Dispose();
        }
    }
}

/// <summary>Host access to a manager's blocks for tests that stamp or read them in place.</summary>
internal static class KvBlockAccess
{
    /// <summary>The bytes of physical block <paramref name="block"/> of a host pool, in place.</summary>
    public static Span<byte> HostBlock(this KvCacheManager kv, int block) => ((HostKvPool)kv.Pool).Slice(block * kv.BlockBytes, kv.BlockBytes);
}
