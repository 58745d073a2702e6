using System.Diagnostics;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

// usage: sparse-op-bench THREADS [PRESET ...] [--rows=1,128] [--device=cpu|cuda[:N]] [--fp16]: one line per
// (preset, layer shape, M): the fastest of 7 timings each, dense and sparse alternating, so load from
// other processes on a shared machine inflates neither side alone.
// --device=cuda runs both models on ONNX Runtime's CUDA provider (a GPU-package build), our op's CUDA
// kernels against ONNX Runtime's cuBLAS MatMul; the outputs stay on the device (IOBinding) and A is
// copied in once per call, shared by all the model's layers. --fp16: A, weights and Y in fp16
// (the sparse prefill kernel uses mma.sp only in fp16).
// Each model holds enough copies of the layer (different weights, same A) to pass 96 MB of
// dense weights, so every call streams its weights from DRAM as a decode step does; a single
// 2.6 MB layer would sit in the 32 MB L3 and time the cache instead. Times are per layer.
string? rowsArg = args.FirstOrDefault(a => a.StartsWith("--rows=", StringComparison.Ordinal));
string deviceArg = args.FirstOrDefault(a => a.StartsWith("--device=", StringComparison.Ordinal))?["--device=".Length..] ?? "cpu";
Bench.Fp16 = args.Contains("--fp16");
Bench.Device = ExecutionDevice.Select(DeviceRequest.Parse(deviceArg), CudaProbe.WhyNot);
args = [.. args.Where(a => a != rowsArg && !a.StartsWith("--device=", StringComparison.Ordinal) && a != "--fp16")];
int threads = args.Length > 0 ? int.Parse(args[0], System.Globalization.CultureInfo.InvariantCulture) : 2;
string[] presets = args.Length > 1 ? args[1..] : ["gemma3-270m", "gemma3-1b"];
int[] rows = rowsArg is null ? [1, 4, 16, 128, 512]
    : [.. rowsArg["--rows=".Length..].Split(',').Select(r => int.Parse(r, System.Globalization.CultureInfo.InvariantCulture))];
string folder = Directory.CreateTempSubdirectory("sparse-op-bench").FullName;
Console.WriteLine($"device {Bench.Device.Name}, {(Bench.Fp16 ? "fp16" : "fp32")}");
Console.WriteLine("| preset | layer | K × N | M | dense MatMul µs | SparseMatMul24 µs | speed-up |");
Console.WriteLine("|---|---|---|---|---|---|---|");
foreach (string preset in presets)
{
    Gemma3Config c = Gemma3Presets.Find(preset) ?? throw new ArgumentException($"unknown preset {preset}");
    int q = c.NumAttentionHeads * c.HeadDim, kv = c.NumKeyValueHeads * c.HeadDim;
    (string Layer, int K, int N)[] shapes = [("q_proj", c.HiddenSize, q), ("k/v_proj", c.HiddenSize, kv), ("o_proj", q, c.HiddenSize),
        ("gate/up_proj", c.HiddenSize, c.IntermediateSize), ("down_proj", c.IntermediateSize, c.HiddenSize)];
    foreach (var (layer, k, n) in shapes)
    {
        // On a GPU 96 MB also passes the L2 (50 MB on an H100 / H200).
        int copies = (int)Math.Clamp(96L * 1024 * 1024 / (4L * k * n), 1, 64);
        PackedWeight[] packed = [.. Enumerable.Range(0, copies).Select(i => SparseFormat.Pack(Bench.Random(k * n, seed: k + n + i), k, n))];
        using InferenceSession dense = Bench.Open(Bench.Dense([.. packed.Select(SparseFormat.Unpack)], k, n), Path.Combine(folder, "dense.onnx"), threads);
        using InferenceSession sparse = Bench.Open(Bench.Sparse(packed), Path.Combine(folder, "sparse.onnx"), threads);
        foreach (int m in rows)
        {
            float[] a = Bench.Random(m * k, seed: m);
            var (d, s) = Bench.Fastest(dense, sparse, a, m, k, copies);
            Console.WriteLine($"| {preset} | {layer} | {k} × {n} | {m} | {d:F1} | {s:F1} | {d / s:F2}x |");
        }
    }
}

Directory.Delete(folder, recursive: true);

internal static class Bench
{
    public static ExecutionDevice Device { get; set; } = ExecutionDevice.Cpu;

    public static bool Fp16 { get; set; }

    private static DataType Element => Fp16 ? DataType.Float16 : DataType.Float;

    /// <summary>µs per layer of each session: the fastest of 7 alternating timings of ≥ 50 ms each.</summary>
    public static (double Dense, double Sparse) Fastest(InferenceSession dense, InferenceSession sparse, float[] a, int m, int k, int copies)
    {
        using OrtValue input = Fp16
            ? OrtValue.CreateTensorValueFromMemory([.. a.Select(x => new Float16(BitConverter.HalfToUInt16Bits((Half)x)))], [m, k])
            : OrtValue.CreateTensorValueFromMemory(a, [m, k]);
        var (denseCalls, sparseCalls) = (Calibrate(dense, input), Calibrate(sparse, input));
        double bestDense = double.MaxValue, bestSparse = double.MaxValue;
        for (int round = 0; round < 7; round++)
        {
            bestDense = Math.Min(bestDense, Time(dense, input, denseCalls) / copies);
            bestSparse = Math.Min(bestSparse, Time(sparse, input, sparseCalls) / copies);
        }

        return (bestDense, bestSparse);
    }

    private static int Calibrate(InferenceSession session, OrtValue input)
    {
        Time(session, input, 1);
        var clock = Stopwatch.StartNew();
        int calls = 0;
        while (clock.ElapsedMilliseconds < 50)
        {
            Time(session, input, 1);
            calls++;
        }

        return calls;
    }

    /// <summary>µs per call over <paramref name="calls"/> calls.</summary>
    private static double Time(InferenceSession session, OrtValue input, int calls)
    {
        using var options = new RunOptions();
        string[] outputNames = [.. session.OutputNames];
        if (Device.IsCuda)
        {
            return TimeOnDevice(session, options, input, outputNames, calls);
        }

        var clock = Stopwatch.StartNew();
        for (int i = 0; i < calls; i++)
        {
            using var outputs = session.Run(options, ["A"], [input], outputNames);
        }

        return clock.Elapsed.TotalMicroseconds / calls;
    }

    /// <summary>The outputs stay in device memory; each call ends when the device has finished (ONNX Runtime synchronizes bound outputs).</summary>
    private static double TimeOnDevice(InferenceSession session, RunOptions options, OrtValue input, string[] outputNames, int calls)
    {
        using var cuda = new OrtMemoryInfo(OrtMemoryInfo.allocatorCUDA, OrtAllocatorType.DeviceAllocator, Device.Ordinal, OrtMemType.Default);
        using OrtIoBinding binding = session.CreateIoBinding();
        binding.BindInput("A", input);
        foreach (string name in outputNames)
        {
            binding.BindOutputToDevice(name, cuda);
        }

        var clock = Stopwatch.StartNew();
        for (int i = 0; i < calls; i++)
        {
            session.RunWithBinding(options, binding);
        }

        return clock.Elapsed.TotalMicroseconds / calls;
    }

    public static InferenceSession Open(ModelProto model, string path, int threads)
    {
        OnnxModelFile.Save(model, path, externalThresholdBytes: long.MaxValue);
        using var options = new SessionOptions { IntraOpNumThreads = threads, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        Device.Apply(options);
        SparseKernels.RegisterIfUsed(options, path);
        return new InferenceSession(path, options);
    }

    public static ModelProto Dense(float[][] weights, int k, int n) => Model(weights.Select((w, i) =>
        (Node("MatMul", "", i, ["A", $"W{i}"], null), new[] { Tensor($"W{i}", Element, Bytes(w), k, n) })), k, "");

    public static ModelProto Sparse(PackedWeight[] weights) => Model(weights.Select((p, i) =>
        (Node(SparseFormat.OpType, SparseFormat.Domain, i, ["A", $"values{i}", $"masks{i}"], GraphBuilder.Attr("K", (long)p.K)),
         new[] { SparseFormat.ValuesTensor(p, $"values{i}", Element), SparseFormat.MasksTensor(p, $"masks{i}") })),
        weights[0].K, SparseFormat.Domain);

    public static float[] Random(int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1))];
    }

    private static byte[] Bytes(float[] values) => Fp16
        ? System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.Select(v => (Half)v).ToArray().AsSpan()).ToArray()
        : System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray();

    private static TensorProto Tensor(string name, DataType type, byte[] raw, params long[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    private static NodeProto Node(string op, string domain, int index, string[] inputs, AttributeProto? attribute)
    {
        var node = new NodeProto { Name = $"op{index}", OpType = op, Domain = domain };
        node.Input.AddRange(inputs);
        node.Output.Add($"Y{index}");
        if (attribute is not null)
        {
            node.Attribute.Add(attribute);
        }

        return node;
    }

    private static ModelProto Model(IEnumerable<(NodeProto Node, TensorProto[] Initializers)> layers, int k, string domain)
    {
        var graph = new GraphProto { Name = "bench" };
        graph.Input.Add(GraphBuilder.ValueInfo("A", Element, "M", k));
        foreach (var (node, initializers) in layers)
        {
            graph.Node.Add(node);
            graph.Initializer.AddRange(initializers);
            graph.Output.Add(GraphBuilder.ValueInfo(node.Output[0], Element, "M", "N"));
        }

        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        if (domain.Length > 0)
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = domain, Version = 1 });
        }

        return model;
    }
}
