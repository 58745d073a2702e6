using Google.Protobuf;
using Serving.Runtime.Onnx.Proto;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Onnx;

/// <summary>
/// Emits ONNX nodes with Optimum-style names (<c>/model/layers.0/self_attn/q_proj/MatMul</c>,
/// output <c>…/MatMul_output_0</c>), so tools can find nodes by scope the same way in our
/// graphs and in Hugging Face exports. Small constants are inlined as initializers.
/// </summary>
public sealed class GraphBuilder
{
    private readonly Dictionary<string, int> _nameCounts = [];
    private readonly Stack<string> _scopes = new();

    public GraphBuilder(string name) => Graph = new GraphProto { Name = name };

    public GraphProto Graph { get; }

    private string Scope => _scopes.Count == 0 ? "" : _scopes.Peek();

    /// <summary>Nests node names under <paramref name="name"/> until the returned scope is disposed.</summary>
    public IDisposable PushScope(string name)
    {
        _scopes.Push($"{Scope}/{name}");
        return new ScopeGuard(_scopes);
    }

    /// <summary>Adds a node and returns its first output.</summary>
    public string Op(string opType, IEnumerable<string> inputs, params AttributeProto[] attributes) =>
        OpN(opType, inputs, 1, attributes)[0];

    /// <summary>Adds a node with <paramref name="outputCount"/> outputs.</summary>
    public string[] OpN(string opType, IEnumerable<string> inputs, int outputCount, params AttributeProto[] attributes) =>
        OpN("", opType, inputs, outputCount, attributes);

    /// <summary>Adds a node of operator domain <paramref name="domain"/> (<c>com.microsoft</c> for ONNX Runtime's contrib ops) and returns its first output.</summary>
    public string OpIn(string domain, string opType, IEnumerable<string> inputs, params AttributeProto[] attributes) =>
        OpN(domain, opType, inputs, 1, attributes)[0];

    /// <summary>Adds a node of <paramref name="domain"/> with <paramref name="outputCount"/> outputs.</summary>
    public string[] OpN(string domain, string opType, IEnumerable<string> inputs, int outputCount, params AttributeProto[] attributes)
    {
        string name = UniqueName($"{Scope}/{opType}");
        var node = new NodeProto { Name = name, OpType = opType, Domain = domain };
        node.Input.AddRange(inputs);
        var outputs = new string[outputCount];
        for (int i = 0; i < outputCount; i++)
        {
            outputs[i] = $"{name}_output_{i}";
        }

        node.Output.AddRange(outputs);
        node.Attribute.AddRange(attributes);
        Graph.Node.Add(node);
        return outputs;
    }

    /// <summary>Renames the output of the node that produced <paramref name="value"/>.</summary>
    public string Rename(string value, string newName)
    {
        foreach (NodeProto node in Graph.Node)
        {
            int index = node.Output.IndexOf(value);
            if (index >= 0)
            {
                node.Output[index] = newName;
                return newName;
            }
        }

        throw new InvalidOperationException($"no node produces '{value}'");
    }

    public string Int64s(params long[] values) => Int64Tensor(values, [values.Length]);

    /// <summary>A 0-d int64 constant (what Range and scalar arithmetic need).</summary>
    public string Int64Scalar(long value) => Int64Tensor([value], []);

    public string Floats(params float[] values) => FloatTensor(values, [values.Length]);

    public string FloatScalar(float value) => FloatTensor([value], []);

    private string Int64Tensor(long[] values, long[] dims) => Constant<long>(values, dims, DataType.Int64, "const_i64");

    private string FloatTensor(float[] values, long[] dims) => Constant<float>(values, dims, DataType.Float, "const_f32");

    private string Constant<T>(T[] values, long[] dims, DataType type, string name)
        where T : unmanaged
    {
        var tensor = new TensorProto { Name = UniqueName($"{Scope}/{name}"), DataType = (int)type };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(values.AsSpan()));
        Graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    public void AddInitializer(TensorProto tensor) => Graph.Initializer.Add(tensor);

    /// <summary>Declares a graph input; dims are numbers or symbolic names.</summary>
    public string Input(string name, DataType type, params object[] dims)
    {
        Graph.Input.Add(ValueInfo(name, type, dims));
        return name;
    }

    /// <summary>
    /// Declares a graph input of unknown rank (no shape in its type): ONNX Runtime then takes
    /// a tensor of any rank, where a declared shape refuses every other rank.
    /// </summary>
    public string InputOfAnyRank(string name, DataType type)
    {
        Graph.Input.Add(new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } },
        });
        return name;
    }

    /// <summary>Declares <paramref name="value"/> a graph output under <paramref name="name"/>.</summary>
    public void Output(string value, string name, DataType type, params object[] dims)
    {
        if (value != name)
        {
            Rename(value, name);
        }

        Graph.Output.Add(ValueInfo(name, type, dims));
    }

    public static ValueInfoProto ValueInfo(string name, DataType type, params object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (object dim in dims)
        {
            shape.Dim.Add(dim switch
            {
                string symbol => new TensorShapeProto.Types.Dimension { DimParam = symbol },
                int size => new TensorShapeProto.Types.Dimension { DimValue = size },
                long size => new TensorShapeProto.Types.Dimension { DimValue = size },
                _ => throw new ArgumentException($"dimension {dim} must be a string or an integer", nameof(dims)),
            });
        }

        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    public static AttributeProto Attr(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Attr(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    public static AttributeProto Attr(string name, string value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.String, S = ByteString.CopyFromUtf8(value) };

    public static AttributeProto Attr(string name, params long[] values)
    {
        var attribute = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        attribute.Ints.AddRange(values);
        return attribute;
    }

    private string UniqueName(string name)
    {
        int count = _nameCounts.GetValueOrDefault(name);
        _nameCounts[name] = count + 1;
        return count == 0 ? name : $"{name}_{count}";
    }

    private sealed class ScopeGuard(Stack<string> scopes) : IDisposable
    {
        public void Dispose() => scopes.Pop();
    }
}
