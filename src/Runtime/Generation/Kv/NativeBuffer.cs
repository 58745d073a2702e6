using System.Runtime.InteropServices;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// A block of native memory, 64-byte aligned, that ONNX Runtime reads and writes in place
/// (OrtValues are created over it). KV caches live here rather than on the managed heap:
/// a 270M-parameter Gemma holds 36 KB per token, so a few hundred tokens would otherwise
/// land on the large-object heap at every step.
/// </summary>
public sealed unsafe class NativeBuffer : SafeHandle
{
    public NativeBuffer(long bytes) : base(IntPtr.Zero, ownsHandle: true)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bytes);
        Bytes = bytes;
        SetHandle((IntPtr)NativeMemory.AlignedAlloc((nuint)Math.Max(bytes, 1), 64));
    }

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
