using Microsoft.ML.OnnxRuntime;

namespace Serving.Runtime.Generation.Kv;

/// <summary>
/// Where a sequence's cache currently lives: each layer's key and value tensors (one row of
/// them), with the sequence's slots right-aligned at the end of every layer.
/// </summary>
public readonly record struct KvRowSource(IReadOnlyList<OrtValue> Keys, IReadOnlyList<OrtValue> Values, int Row, int Length);

/// <summary>OrtValues over native buffers, shaped like the decoder's cache inputs and outputs.</summary>
public static class KvTensors
{
    public static OrtValue Over(NativeBuffer buffer, KvLayout layout, int rows, int slots)
    {
        long[] shape = [rows, layout.Heads, slots, layout.HeadDim];
        long bytes = rows * (long)slots * layout.SlotBytes;
        if (bytes > buffer.Bytes)
        {
            throw new ArgumentOutOfRangeException(nameof(slots), $"{rows} × {slots} slots need {bytes} bytes; the buffer has {buffer.Bytes}");
        }

        return OrtValue.CreateTensorValueWithData(OrtMemoryInfo.DefaultInstance, layout.ElementType, shape, buffer.Pointer, bytes);
    }

    public static KvCopy.CacheView View(OrtValue value, KvLayout layout)
    {
        long[] shape = value.GetTensorTypeAndShape().Shape;
        return new KvCopy.CacheView(value.GetTensorMutableRawData(), (int)shape[0], (int)shape[2], layout);
    }

    public static KvCopy.CacheView View(NativeBuffer buffer, KvLayout layout, int rows, int slots) =>
        new(buffer.Slice(0, rows * (long)slots * layout.SlotBytes), rows, slots, layout);
}
