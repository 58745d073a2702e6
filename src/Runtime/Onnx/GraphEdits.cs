using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Onnx;

/// <summary>Small in-place edits that later tools need (calibration taps, kernel rewrites).</summary>
public static class GraphEdits
{
    /// <summary>The node producing <paramref name="value"/>, or null for graph inputs and initializers.</summary>
    public static NodeProto? Producer(GraphProto graph, string value) =>
        graph.Node.FirstOrDefault(node => node.Output.Contains(value));

    public static TensorProto? FindInitializer(GraphProto graph, string name) =>
        graph.Initializer.FirstOrDefault(tensor => tensor.Name == name);

    /// <summary>
    /// Exposes an intermediate value as an extra graph output (type and shape left for ONNX
    /// Runtime to infer when <paramref name="elementType"/> is null). No-op if it already is one.
    /// </summary>
    public static void AddOutput(GraphProto graph, string value, TensorProto.Types.DataType? elementType = null)
    {
        if (graph.Output.Any(output => output.Name == value))
        {
            return;
        }

        bool exists = graph.Node.Any(node => node.Output.Contains(value))
            || graph.Input.Any(input => input.Name == value);
        if (!exists)
        {
            throw new ArgumentException($"the graph has no value named '{value}'", nameof(value));
        }

        var info = new ValueInfoProto { Name = value };
        if (elementType is { } type)
        {
            info.Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type } };
        }

        graph.Output.Add(info);
    }

    /// <summary>
    /// Replaces <paramref name="old"/> by <paramref name="replacement"/> at the same position
    /// (keeps topological order when the replacement reads the same or earlier values).
    /// </summary>
    public static void ReplaceNode(GraphProto graph, NodeProto old, NodeProto replacement)
    {
        int index = graph.Node.IndexOf(old);
        if (index < 0)
        {
            throw new ArgumentException($"node '{old.Name}' is not in graph '{graph.Name}'", nameof(old));
        }

        graph.Node[index] = replacement;
    }

    /// <summary>Drops every node whose outputs no graph output needs (the mask subgraph, the old attention).</summary>
    public static void RemoveDeadNodes(GraphProto graph)
    {
        var needed = new HashSet<string>(graph.Output.Select(output => output.Name));
        var live = new List<NodeProto>(graph.Node.Count);
        for (int i = graph.Node.Count - 1; i >= 0; i--)
        {
            NodeProto node = graph.Node[i];
            if (node.Output.Any(needed.Contains))
            {
                live.Add(node);
                needed.UnionWith(node.Input.Where(input => input.Length > 0));
            }
        }

        live.Reverse();
        graph.Node.Clear();
        graph.Node.AddRange(live);
    }

    /// <summary>Drops initializers that no node reads; returns how many were removed.</summary>
    public static int RemoveUnusedInitializers(GraphProto graph)
    {
        var used = new HashSet<string>(graph.Node.SelectMany(node => node.Input));
        foreach (ValueInfoProto output in graph.Output)
        {
            used.Add(output.Name);
        }

        var unused = graph.Initializer.Where(tensor => !used.Contains(tensor.Name)).ToList();
        foreach (TensorProto tensor in unused)
        {
            graph.Initializer.Remove(tensor);
        }

        return unused.Count;
    }
}
