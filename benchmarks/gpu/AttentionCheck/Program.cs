using System.Diagnostics;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Devices;
using Serving.Runtime.Onnx;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Generation.Kv;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

// usage: attention-check [--device=cuda[:N]]
// PagedAttention with gemma3-1b's attention shape (4 query heads, 1 KV head, head_dim 256, blocks of 16
// slots), with an fp32 pool and then an fp16 one (Serving:KvCacheDtype=fp16), one session on the CPU provider (pool in host memory) and one on --device (on CUDA the pool
// is device memory: serving.kv_pool=device), fed the same calls: two prompts prefilled in chunks, then
// decode steps. Prints one line per check: the largest difference of their outputs, then decode and
// prefill timings of both at several context lengths. --device=cpu runs the harness itself on a
// machine without a GPU (both sides then run the CPU op).
string deviceArg = args.FirstOrDefault(a => a.StartsWith("--device=", StringComparison.Ordinal))?["--device=".Length..] ?? "cuda";
ExecutionDevice device;
try
{
    device = ExecutionDevice.Select(DeviceRequest.Parse(deviceArg), CudaProbe.WhyNot);
}
catch (DeviceUnavailableException e)
{
    Console.WriteLine($"check attention: FAILED: {e.Message}");
    return 1;
}

string folder = Directory.CreateTempSubdirectory("attention-check").FullName;
int exit = 0;
// The pool in fp32, then in fp16 (Serving:KvCacheDtype=fp16: keys and values stored as halves, math in fp32).
foreach ((DataType type, string name) in new[] { (DataType.Float, "fp32"), (DataType.Float16, "fp16") })
{
    string path = Path.Combine(folder, $"paged-{name}.onnx");
    OnnxModelFile.Save(PagedAttentionModel.Build(window: 0, layer: 0, Calls.Heads, Calls.KvHeads, type), path, externalThresholdBytes: long.MaxValue);
    using var cpu = new Side(path, ExecutionDevice.Cpu, numBlocks: 1024, type);
    using var other = new Side(path, device, numBlocks: 1024, type);
    double worst = Calls.Compare(cpu, other);
    bool ok = worst < 1e-4;
    exit |= ok ? 0 : 1;
    Console.WriteLine($"check attention-correctness {name} pool ({device.Name} vs cpu): max |Δ| = {worst:E2} over prefill chunks and decode steps: {(ok ? "PASS" : "FAIL")}");
    foreach (var (batch, context, tokens) in new[] { (1, 512, 1), (1, 4096, 1), (16, 1024, 1), (1, 4096, 512) })
    {
        double c = Calls.Time(cpu, batch, context, tokens), g = Calls.Time(other, batch, context, tokens);
        Console.WriteLine($"check attention-time {name} pool, batch {batch}, context {context}, {tokens} new token(s) each: cpu {c:F0} µs, {device.Name} {g:F0} µs per call");
    }
}

Directory.Delete(folder, recursive: true);
return exit;

/// <summary>One session of the op and its KV pool: host memory on the CPU, device memory on CUDA.</summary>
internal sealed class Side : IDisposable
{
    private readonly OrtAllocator? _allocator;

    public Side(string path, ExecutionDevice device, int numBlocks, DataType pool)
    {
        using var options = new SessionOptions();
        device.Apply(options);
        options.AddSessionConfigEntry("serving.kv_pool", device.IsCuda ? "device" : "host");
        options.RegisterCustomOpLibrary(SparseKernels.LibraryPath);
        Session = new InferenceSession(path, options);
        long[] shape = [numBlocks, 2, Calls.KvHeads, Calls.BlockSize, Calls.HeadSize];
        if (device.IsCuda)
        {
            using var cuda = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, device.Ordinal, OrtMemType.Default);
            _allocator = new OrtAllocator(Session, cuda);
            Pool = OrtValue.CreateAllocatedTensorValue(_allocator, pool == DataType.Float16 ? TensorElementType.Float16 : TensorElementType.Float, shape);
        }
        else
        {
            long count = shape.Aggregate(1L, (a, b) => a * b);
            Pool = pool == DataType.Float16
                ? OrtValue.CreateTensorValueFromMemory(new Float16[count], shape)
                : OrtValue.CreateTensorValueFromMemory(new float[count], shape);
        }
    }

    public InferenceSession Session { get; }
    public OrtValue Pool { get; }

    /// <summary>Runs one call; returns the output on the host.</summary>
    public float[] Run(float[] q, float[] k, float[] v, int[] tables, int[] past, int[] starts)
    {
        int tokens = starts[^1], seqs = past.Length;
        using OrtValue qv = OrtValue.CreateTensorValueFromMemory(q, [1, tokens, Calls.Heads * Calls.HeadSize]);
        using OrtValue kv = OrtValue.CreateTensorValueFromMemory(k, [1, tokens, Calls.KvHeads * Calls.HeadSize]);
        using OrtValue vv = OrtValue.CreateTensorValueFromMemory(v, [1, tokens, Calls.KvHeads * Calls.HeadSize]);
        using OrtValue tv = OrtValue.CreateTensorValueFromMemory(tables, [1, seqs, tables.Length / seqs]);
        using OrtValue pv = OrtValue.CreateTensorValueFromMemory(past, [1, seqs]);
        using OrtValue sv = OrtValue.CreateTensorValueFromMemory(starts, [seqs + 1]);
        using var outputs = Session.Run(new RunOptions(), PagedAttentionModel.Inputs, [qv, kv, vv, Pool, tv, pv, sv], ["output"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose()
    {
        Pool.Dispose();
        _allocator?.Dispose();
        Session.Dispose();
    }
}

internal static class Calls
{
    public const int Heads = 4, KvHeads = 1, HeadSize = 256, BlockSize = 16;

    /// <summary>The largest |difference| of the two sides' outputs over prefill chunks (130 and 47 tokens, then 60) and 12 decode steps.</summary>
    public static double Compare(Side a, Side b)
    {
        var rng = new Random(5);
        int[] lengths = [0, 0];
        int[] tables = [.. Enumerable.Range(0, 2 * 32).Select(i => i % 2 * 32 + i / 2)];  // interleaved: sequence 1's blocks among 0's
        double worst = 0;
        int[][] steps = [[130, 47], [60, 1], .. Enumerable.Repeat(new[] { 1, 1 }, 12)];
        foreach (int[] step in steps)
        {
            int tokens = step.Sum();
            float[] q = Random(rng, tokens * Heads * HeadSize), k = Random(rng, tokens * KvHeads * HeadSize), v = Random(rng, tokens * KvHeads * HeadSize);
            int[] starts = [0, step[0], tokens], past = [.. lengths];
            float[] x = a.Run(q, k, v, tables, past, starts), y = b.Run(q, k, v, tables, past, starts);
            for (int i = 0; i < x.Length; i++)
            {
                worst = Math.Max(worst, Math.Abs(x[i] - y[i]));
            }

            lengths[0] += step[0];
            lengths[1] += step[1];
        }

        return worst;
    }

    /// <summary>µs per call: <paramref name="batch"/> sequences of <paramref name="context"/> past slots, <paramref name="tokens"/> new each (fastest of 5 rounds of 20).</summary>
    public static double Time(Side side, int batch, int context, int tokens)
    {
        var rng = new Random(9);
        int cols = (context + tokens + BlockSize - 1) / BlockSize;
        int[] tables = [.. Enumerable.Range(0, batch * cols).Select(i => i % 1000)];  // blocks may repeat across sequences: timing only
        int all = batch * tokens;
        float[] q = Random(rng, all * Heads * HeadSize), k = Random(rng, all * KvHeads * HeadSize), v = Random(rng, all * KvHeads * HeadSize);
        int[] past = [.. Enumerable.Repeat(context, batch)], starts = [.. Enumerable.Range(0, batch + 1).Select(s => s * tokens)];
        side.Run(q, k, v, tables, past, starts);
        double best = double.MaxValue;
        for (int round = 0; round < 5; round++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < 20; i++)
            {
                side.Run(q, k, v, tables, past, starts);
            }

            best = Math.Min(best, clock.Elapsed.TotalMicroseconds / 20);
        }

        return best;
    }

    private static float[] Random(Random rng, int count) => [.. Enumerable.Range(0, count).Select(_ => (float)(rng.NextDouble() * 2 - 1))];
}
