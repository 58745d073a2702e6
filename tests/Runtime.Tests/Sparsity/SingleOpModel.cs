using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;
using Serving.Runtime.Devices;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Sparsity;

/// <summary>One-node models around a weight: ONNX Runtime's dense MatMul, or our SparseMatMul24.</summary>
internal static class SingleOpModel
{
    public static ModelProto Dense(float[] weight, int k, int n) =>
        Model(MatMulNode("W"), [Floats("W", weight, k, n)], sparse: false);

    /// <summary>The op on fp16 A, values and Y.</summary>
    public static ModelProto Sparse16(PackedWeight packed)
    {
        var node = new NodeProto { Name = "sparse", OpType = SparseFormat.OpType, Domain = SparseFormat.Domain };
        node.Input.AddRange(["A", "values", "masks"]);
        node.Output.Add("Y");
        node.Attribute.Add(GraphBuilder.Attr("K", (long)packed.K));
        TensorProto[] initializers = [SparseFormat.ValuesTensor(packed, "values", DataType.Float16), SparseFormat.MasksTensor(packed, "masks")];
        return Model(node, initializers, sparse: true, DataType.Float16);
    }

    public static ModelProto Sparse(PackedWeight packed, float[]? bias = null)
    {
        var node = new NodeProto { Name = "sparse", OpType = SparseFormat.OpType, Domain = SparseFormat.Domain };
        node.Input.AddRange(bias is null ? ["A", "values", "masks"] : ["A", "values", "masks", "bias"]);
        node.Output.Add("Y");
        node.Attribute.Add(GraphBuilder.Attr("K", (long)packed.K));
        var initializers = new List<TensorProto>
        {
            Floats("values", packed.Values, packed.N, packed.ValueStride),
            Bytes("masks", packed.Masks, packed.N, packed.MaskStride),
        };
        if (bias is not null)
        {
            initializers.Add(Floats("bias", bias, bias.Length));
        }

        return Model(node, initializers, sparse: true);
    }

    /// <summary>Y for A of shape <paramref name="shape"/> (last dimension K).</summary>
    public static float[] Run(ModelProto model, float[] a, long[] shape)
    {
        using var folder = new TempFolder();
        string path = folder.File("model.onnx");
        OnnxModelFile.Save(model, path, externalThresholdBytes: long.MaxValue);
        return Run(path, a, shape);
    }

    /// <summary>Runs the model file; A and Y are fp16 when the model's input is, converted here.</summary>
    public static float[] Run(string path, float[] a, long[] shape)
    {
        using InferenceSession session = Open(path);
        bool half = session.InputMetadata["A"].ElementDataType == TensorElementType.Float16;
        using OrtValue input = half
            ? OrtValue.CreateTensorValueFromMemory(a.Select(x => new Float16(BitConverter.HalfToUInt16Bits((Half)x))).ToArray(), shape)
            : OrtValue.CreateTensorValueFromMemory(a, shape);
        using var outputs = session.Run(new RunOptions(), ["A"], [input], ["Y"]);
        return half
            ? [.. outputs[0].GetTensorDataAsSpan<Float16>().ToArray().Select(h => (float)BitConverter.UInt16BitsToHalf(h.value))]
            : outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    /// <summary>
    /// The device of every one-op session: <c>SERVING_TEST_DEVICE</c> (auto, cpu, cuda[:N]; default cpu).
    /// benchmarks/gpu/check.sh sets cuda with the GPU package, so these tests check the CUDA provider's
    /// kernels against ONNX Runtime's own CUDA MatMul; a cuda that cannot run fails every test, saying why.
    /// </summary>
    public static ExecutionDevice Device { get; } =
        ExecutionDevice.Select(DeviceRequest.Parse(Environment.GetEnvironmentVariable("SERVING_TEST_DEVICE") is { Length: > 0 } d ? d : "cpu"), CudaProbe.WhyNot);

    public static InferenceSession Open(string path)
    {
        using var options = new SessionOptions { IntraOpNumThreads = 2 };
        // On CUDA, full fp32 in ONNX Runtime's own MatMul (Apply turns TF32 off), so it stays a reference
        // for our kernels at the tests' 1e-5.
        Device.Apply(options);
        SparseKernels.RegisterIfUsed(options, path);
        return new InferenceSession(path, options);
    }

    public static TensorProto Floats(string name, float[] values, params long[] dims) =>
        Tensor(name, DataType.Float, System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()).ToArray(), dims);

    public static TensorProto Bytes(string name, byte[] values, params long[] dims) => Tensor(name, DataType.Uint8, values, dims);

    private static TensorProto Tensor(string name, DataType type, byte[] raw, long[] dims)
    {
        var tensor = new TensorProto { Name = name, DataType = (int)type, RawData = ByteString.CopyFrom(raw) };
        tensor.Dims.AddRange(dims);
        return tensor;
    }

    private static NodeProto MatMulNode(string weight)
    {
        var node = new NodeProto { Name = "dense", OpType = "MatMul" };
        node.Input.AddRange(["A", weight]);
        node.Output.Add("Y");
        return node;
    }

    private static ValueInfoProto AnyShape(string name, DataType type) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } },
    };

    public static ModelProto Model(NodeProto node, IEnumerable<TensorProto> initializers, bool sparse, DataType type = DataType.Float)
    {
        var graph = new GraphProto { Name = "single" };
        graph.Node.Add(node);
        graph.Initializer.AddRange(initializers);
        // Any rank: the op takes A [..., K] like MatMul.
        graph.Input.Add(AnyShape("A", type));
        graph.Output.Add(AnyShape("Y", type));
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        if (sparse)
        {
            model.OpsetImport.Add(new OperatorSetIdProto { Domain = SparseFormat.Domain, Version = 1 });
        }

        return model;
    }
}
