using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>A one-node model around the PagedAttention op, inputs of any shape, for the op's tests.</summary>
internal static class PagedAttentionModel
{
    public static readonly string[] Inputs = ["query", "key", "value", "kv_pool", "block_tables", "past_lens", "query_starts"];

    public static ModelProto Build(long window, long layer, int heads, int kvHeads)
    {
        var node = new NodeProto { Name = "attention", OpType = "PagedAttention", Domain = SparseFormat.Domain };
        node.Input.AddRange(Inputs);
        node.Output.Add("output");
        node.Attribute.Add(GraphBuilder.Attr("layer", layer));
        node.Attribute.Add(GraphBuilder.Attr("num_heads", (long)heads));
        node.Attribute.Add(GraphBuilder.Attr("kv_num_heads", (long)kvHeads));
        node.Attribute.Add(GraphBuilder.Attr("sliding_window", window));
        var graph = new GraphProto { Name = "paged" };
        graph.Node.Add(node);
        foreach (string name in Inputs)
        {
            graph.Input.Add(AnyShape(name, name is "block_tables" or "past_lens" or "query_starts" ? DataType.Int32 : DataType.Float));
        }

        graph.Output.Add(AnyShape("output", DataType.Float));
        var model = new ModelProto { IrVersion = 8, Graph = graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Version = 17 });
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = SparseFormat.Domain, Version = 1 });
        return model;
    }

    private static ValueInfoProto AnyShape(string name, DataType type) => new()
    {
        Name = name,
        Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } },
    };
}
