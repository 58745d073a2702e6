using System.Runtime.InteropServices;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// A block of native memory, 64-byte aligned, that ONNX Runtime reads and writes in place
/// (OrtValues are created over it). KV caches live here rather than on the managed heap:
/// a 270M-parameter Gemma holds 36 KB per token, so a few hundred tokens would otherwise
/// land on the large-object heap at every step.
/// </summary>
/// <remarks>
/// Buffers of 2 MB or more are 2 MB aligned and, on Linux, advised as transparent huge pages
/// (<c>madvise(MADV_HUGEPAGE)</c>; most distributions enable THP only where asked): the first
/// write into a pool region then takes one fault instead of 512 (a 66-token prefill of the 270M
/// model writes 2.4 MB of KV, about 600 small-page faults at several µs each in a VM), and decode
/// reads a long cache through fewer TLB entries. Pages stay untouched, and out of resident memory,
/// until a block is written.
/// </remarks>
public sealed unsafe partial class NativeBuffer : SafeHandle
{
    private const long HugePage = 2 << 20;

    public NativeBuffer(long bytes) : base(IntPtr.Zero, ownsHandle: true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Bytes = bytes;
        bool huge = bytes >= HugePage;
        long size = huge ? (bytes + HugePage - 1) / HugePage * HugePage : Math.Max(bytes, 1);
        SetHandle((IntPtr)NativeMemory.AlignedAlloc((nuint)size, huge ? (nuint)HugePage : 64));
        if (huge && OperatingSystem.IsLinux())
        {
            // Advice only: a kernel without THP (or with it off) returns an error or ignores it, and the
            // buffer works the same with small pages.
            _ = Madvise(handle, (nuint)size, MadvHugePage);
        }
    }

    private const int MadvHugePage = 14;

    [LibraryImport("libc", EntryPoint = "madvise")]
    private static partial int Madvise(IntPtr address, nuint length, int advice);

    public long Bytes { get; }

    public override bool IsInvalid => handle == IntPtr.Zero;

    public IntPtr Pointer => IsClosed ? throw new ObjectDisposedException(nameof(NativeBuffer)) : handle;

    /// <summary>The bytes from <paramref name="offset"/>; valid until the buffer is disposed.</summary>
    public Span<byte> Slice(long offset, long length)
    {
        if (offset < 0 || length < 0 || offset + length > Bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(offset), $"[{offset}, {offset + length}) is outside a {Bytes}-byte buffer");
        }

        return new Span<byte>((byte*)Pointer + offset, checked((int)length));
    }

    protected override bool ReleaseHandle()
    {
        NativeMemory.AlignedFree((void*)handle);
        return true;
    }
}
