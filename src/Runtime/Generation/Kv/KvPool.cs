using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// The memory of the KV pool, where the model's attention reads and writes it in place: host
/// memory for the CPU provider (<see cref="HostKvPool"/>), device memory for CUDA
/// (<see cref="CudaKvPool"/>). Outside the model's calls the engine touches the pool only
/// through these copies (copy-on-write of shared blocks, KV compression's reads and write-back),
/// so the same engine runs over either.
/// </summary>
public abstract class KvPool : IDisposable
{
    protected KvPool(long bytes) => Bytes = bytes;

    public long Bytes { get; }

    /// <summary>The pool's first byte: a host address, or a device address for <see cref="MemoryInfo"/>'s device.</summary>
    public abstract IntPtr Pointer { get; }

    /// <summary>What an OrtValue over the pool says of its memory.</summary>
    public abstract OrtMemoryInfo MemoryInfo { get; }

    /// <summary>The device whose sessions read the pool in place.</summary>
    public abstract ExecutionDevice Device { get; }

    /// <summary>The pool of <paramref name="bytes"/> for sessions on <paramref name="device"/>.</summary>
    public static KvPool Allocate(ExecutionDevice device, long bytes) => device.IsCuda ? new CudaKvPool(device, bytes) : new HostKvPool(bytes);

    /// <summary>Copies <paramref name="bytes"/> from offset <paramref name="source"/> to <paramref name="target"/> (ranges apart).</summary>
    public abstract void Copy(long source, long target, long bytes);

    /// <summary>Copies the bytes at <paramref name="offset"/> into <paramref name="target"/>.</summary>
    public abstract void Read(long offset, Span<byte> target);

    /// <summary>Copies <paramref name="source"/> to <paramref name="offset"/>.</summary>
    public abstract void Write(long offset, ReadOnlySpan<byte> source);

    public void Dispose()
    {
        Dispose(true);
        GC.SuppressFinalize(this);
    }

    protected abstract void Dispose(bool disposing);

    protected void CheckRange(long offset, long bytes)
    {
        if (offset < 0 || bytes < 0 || offset > Bytes - bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + bytes}) is outside the {Bytes}-byte KV pool");
        }
    }

    protected void CheckApart(long source, long target, long bytes)
    {
        CheckRange(source, bytes);
        CheckRange(target, bytes);
        if (source < target + bytes && target < source + bytes && bytes > 0)
        {
            throw new ArgumentException($"copying {bytes} bytes from {source} to {target}: the ranges overlap");
        }
    }
}

/// <summary>The pool in host memory (<see cref="NativeBuffer"/>: 64-byte aligned, huge pages from 2 MB).</summary>
public sealed class HostKvPool(long bytes) : KvPool(bytes)
{
    private readonly NativeBuffer _buffer = new(bytes);

    public override IntPtr Pointer => _buffer.Pointer;

    public override OrtMemoryInfo MemoryInfo => OrtMemoryInfo.DefaultInstance;

    public override ExecutionDevice Device => ExecutionDevice.Cpu;

    /// <summary>The bytes from <paramref name="offset"/>, in place; valid until the pool is disposed.</summary>
    public Span<byte> Slice(long offset, long length) => _buffer.Slice(offset, length);

    public override void Copy(long source, long target, long bytes)
    {
        CheckApart(source, target, bytes);
        _buffer.Slice(source, bytes).CopyTo(_buffer.Slice(target, bytes));
    }

    public override void Read(long offset, Span<byte> target) => _buffer.Slice(offset, target.Length).CopyTo(target);

    public override void Write(long offset, ReadOnlySpan<byte> source) => source.CopyTo(_buffer.Slice(offset, source.Length));

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _buffer.Dispose();
        }
    }
}

/// <summary>
/// The pool in a CUDA device's memory, allocated by our kernel library (<c>ServingDevicePool*</c>,
/// src/KernelsNative/src/device_pool.h) on the primary context ONNX Runtime's CUDA provider uses,
/// so the provider's PagedAttention kernel reads and writes it in place (sessions with
/// <c>serving.kv_pool=device</c>). Every copy waits for the device before it returns.
/// </summary>
public sealed unsafe class CudaKvPool : KvPool
{
    private readonly OrtMemoryInfo _memoryInfo;
    private readonly delegate* unmanaged<nint, ulong, ulong, ulong, nint> _copy;
    private readonly delegate* unmanaged<nint, ulong, byte*, ulong, nint> _read, _write;
    private readonly delegate* unmanaged<nint, void> _free;
    private nint _pool;

    /// <exception cref="DeviceUnavailableException">The device cannot hold the pool; the message says why.</exception>
    public CudaKvPool(ExecutionDevice device, long bytes) : base(bytes)
    {
        if (!device.IsCuda)
        {
            throw new ArgumentException($"a CUDA KV pool on {device.Name}", nameof(device));
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(bytes, 1);
        Device = device;
        // Resolved once: compaction copies block by block.
        _copy = (delegate* unmanaged<nint, ulong, ulong, ulong, nint>)SparseKernels.RequireExport("ServingDevicePoolCopy");
        _read = (delegate* unmanaged<nint, ulong, byte*, ulong, nint>)SparseKernels.RequireExport("ServingDevicePoolRead");
        _write = (delegate* unmanaged<nint, ulong, byte*, ulong, nint>)SparseKernels.RequireExport("ServingDevicePoolWrite");
        _free = (delegate* unmanaged<nint, void>)SparseKernels.RequireExport("ServingDevicePoolFree");
        nint pool;
        ulong pointer;
        nint error = ((delegate* unmanaged<int, ulong, nint*, ulong*, nint>)SparseKernels.RequireExport("ServingDevicePoolCreate"))(
            device.Ordinal, (ulong)bytes, &pool, &pointer);
        if (error != 0)
        {
            throw new DeviceUnavailableException($"cannot allocate the KV pool ({bytes} bytes) on {device.Name}: {Marshal.PtrToStringUTF8(error)}");
        }

        (_pool, Pointer) = (pool, (IntPtr)(long)pointer);
        _memoryInfo = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, device.Ordinal, OrtMemType.Default);
    }

    ~CudaKvPool() => Dispose(false);

    public override IntPtr Pointer { get; }

    public override OrtMemoryInfo MemoryInfo => _memoryInfo;

    public override ExecutionDevice Device { get; }

    public override void Copy(long source, long target, long bytes)
    {
        CheckApart(source, target, bytes);
        ThrowIfFailed(_copy(Live, (ulong)source, (ulong)target, (ulong)bytes), "KV pool copy");
    }

    public override void Read(long offset, Span<byte> target)
    {
        CheckRange(offset, target.Length);
        fixed (byte* host = target)
        {
            ThrowIfFailed(_read(Live, (ulong)offset, host, (ulong)target.Length), "KV pool read");
        }
    }

    public override void Write(long offset, ReadOnlySpan<byte> source)
    {
        CheckRange(offset, source.Length);
        fixed (byte* host = source)
        {
            ThrowIfFailed(_write(Live, (ulong)offset, host, (ulong)source.Length), "KV pool write");
        }
    }

    protected override void Dispose(bool disposing)
    {
        nint pool = Interlocked.Exchange(ref _pool, 0);
        if (pool != 0)
        {
            _free(pool);
        }

        if (disposing)
        {
            _memoryInfo.Dispose();
        }
    }

    private nint Live => _pool != 0 ? _pool : throw new ObjectDisposedException(nameof(CudaKvPool));

    private static void ThrowIfFailed(nint error, string what)
    {
        if (error != 0)
        {
            throw new InvalidOperationException($"{what}: {Marshal.PtrToStringUTF8(error)}");
        }
    }
}
