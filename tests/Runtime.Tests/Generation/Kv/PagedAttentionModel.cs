using Serving.Runtime.Models;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Generation.Kv;

/// <summary>A one-node model around the PagedAttention op, inputs of any shape, for the op's tests.</summary>
internal static class PagedAttentionModel
{
    public static readonly string[] Inputs =
        ["query", "key", "value", PagedAttentionRewrite.KvPool, PagedAttentionRewrite.BlockTables, PagedAttentionRewrite.PastLengths, PagedAttentionRewrite.QueryStarts];

    /// <summary>The node of <paramref name="layer"/>; <paramref name="pool"/> is kv_pool's element type (Float or Float16).</summary>
    public static ModelProto Build(long window, long layer, int heads, int kvHeads, DataType pool = DataType.Float)
    {
        NodeProto node = PagedAttentionRewrite.AttentionNode("attention", ["query", "key", "value"], "output", (int)layer, heads, kvHeads, scale: 0, (int)window);
        var graph = new GraphProto { Name = "paged" };
        graph.Node.Add(node);
        foreach (string name in Inputs)
        {
            DataType type = name is "block_tables" or "past_lens" or "query_starts" ? DataType.Int32 : DataType.Float;
            graph.Input.Add(AnyShape(name, name == PagedAttentionRewrite.KvPool ? pool : type));
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
