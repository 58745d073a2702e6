using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using static Serving.Runtime.Onnx.GraphBuilder;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Tests.Onnx;

public class OnnxModelFileTests
{
    /// <summary>y = (x + w) * 2 with a 300-float weight (1200 bytes, over the 1 KiB external threshold).</summary>
    private static ModelProto SmallModel(float[] weight)
    {
        var g = new GraphBuilder("test");
        string x = g.Input("x", DataType.Float, "n", weight.Length);
        var tensor = new TensorProto { Name = "w", DataType = (int)DataType.Float };
        tensor.Dims.AddRange([weight.Length]);
        tensor.RawData = Google.Protobuf.ByteString.CopyFrom(System.Runtime.InteropServices.MemoryMarshal.AsBytes(weight.AsSpan()));
        g.AddInitializer(tensor);
        string sum = g.Op("Add", [x, "w"]);
        g.Output(g.Op("Mul", [sum, g.FloatScalar(2f)]), "y", DataType.Float, "n", weight.Length);
        var model = new ModelProto { IrVersion = 8, Graph = g.Graph };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = 17 });
        return model;
    }

    private static float[] Weight() => [.. Enumerable.Range(0, 300).Select(i => i * 0.5f)];

    private static float[] Run(string path, float[] input, string output = "y")
    {
        using var session = new InferenceSession(path);
        using var x = OrtValue.CreateTensorValueFromMemory(input, [1, input.Length]);
        using var results = session.Run(new RunOptions(), ["x"], [x], [output]);
        return results[0].GetTensorDataAsSpan<float>().ToArray();
    }

    [Fact]
    public void SaveMovesLargeTensorsToExternalDataThatOnnxRuntimeReads()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        OnnxModelFile.Save(SmallModel(Weight()), path);

        Assert.True(File.Exists(path + "_data"));
        ModelProto loaded = OnnxModelFile.Load(path);
        TensorProto w = GraphEdits.FindInitializer(loaded.Graph, "w")!;
        Assert.Equal(TensorProto.Types.DataLocation.External, w.DataLocation);
        Assert.Equal(Weight(), TensorData.ReadFloats(w, dir.Path));

        float[] input = [.. Enumerable.Repeat(1f, 300)];
        float[] expected = [.. Weight().Select(v => (v + 1f) * 2f)];
        Assert.Equal(expected, Run(path, input));
    }

    [Fact]
    public void SmallTensorsStayInline()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        OnnxModelFile.Save(SmallModel(Weight()), path, externalThresholdBytes: long.MaxValue);

        Assert.False(File.Exists(path + "_data"));
        TensorProto w = GraphEdits.FindInitializer(OnnxModelFile.Load(path).Graph, "w")!;
        Assert.Equal(TensorProto.Types.DataLocation.Default, w.DataLocation);
        Assert.Equal(Weight(), TensorData.ReadFloats(w, dir.Path));
    }

    [Fact]
    public void RoundTripKeepsTheGraphByteForByte()
    {
        using var dir = new TempFolder();
        string first = dir.File("a.onnx"), second = dir.File("b.onnx");
        OnnxModelFile.Save(SmallModel(Weight()), first, long.MaxValue);
        OnnxModelFile.Save(OnnxModelFile.Load(first), second, long.MaxValue);
        Assert.Equal(File.ReadAllBytes(first), File.ReadAllBytes(second));
    }

    [Fact]
    public void CorruptFileIsReportedWithItsPath()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        File.WriteAllBytes(path, [0xFF, 0xFF, 0xFF, 0x0F, 0x01]);
        var error = Assert.Throws<InvalidDataException>(() => OnnxModelFile.Load(path));
        Assert.Contains(path, error.Message);
    }

    [Fact]
    public void MissingFileIsReportedWithItsPath()
    {
        using var dir = new TempFolder();
        var error = Assert.Throws<FileNotFoundException>(() => OnnxModelFile.Load(dir.File("absent.onnx")));
        Assert.Contains("absent.onnx", error.Message);
    }

    [Fact]
    public void TruncatedExternalDataIsReported()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        OnnxModelFile.Save(SmallModel(Weight()), path);
        File.WriteAllBytes(path + "_data", new byte[100]);
        TensorProto w = GraphEdits.FindInitializer(OnnxModelFile.Load(path).Graph, "w")!;
        var error = Assert.Throws<InvalidDataException>(() => TensorData.ReadFloats(w, dir.Path));
        Assert.Contains("truncated", error.Message);
    }

    [Fact]
    public void AddOutputExposesAnIntermediateValue()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        ModelProto model = SmallModel(Weight());
        string sum = model.Graph.Node.Single(n => n.OpType == "Add").Output[0];
        GraphEdits.AddOutput(model.Graph, sum, DataType.Float);
        OnnxModelFile.Save(model, path);

        float[] input = [.. Enumerable.Repeat(3f, 300)];
        Assert.Equal([.. Weight().Select(v => v + 3f)], Run(path, input, sum));
        Assert.Throws<ArgumentException>(() => GraphEdits.AddOutput(model.Graph, "no-such-value"));
    }

    [Fact]
    public void ReplaceNodeKeepsItsPlaceInTheGraph()
    {
        using var dir = new TempFolder();
        string path = dir.File("model.onnx");
        ModelProto model = SmallModel(Weight());
        NodeProto add = model.Graph.Node.Single(n => n.OpType == "Add");
        var sub = new NodeProto { Name = "sub", OpType = "Sub" };
        sub.Input.AddRange(add.Input);
        sub.Output.AddRange(add.Output);
        GraphEdits.ReplaceNode(model.Graph, add, sub);
        Assert.Same(sub, GraphEdits.Producer(model.Graph, add.Output[0]));
        Assert.Null(GraphEdits.Producer(model.Graph, "x"));
        OnnxModelFile.Save(model, path);

        float[] input = [.. Enumerable.Repeat(1f, 300)];
        Assert.Equal([.. Weight().Select(v => (1f - v) * 2f)], Run(path, input));
    }

    [Fact]
    public void RemoveUnusedInitializersDropsOnlyUnreadTensors()
    {
        ModelProto model = SmallModel(Weight());
        model.Graph.Initializer.Add(new TensorProto { Name = "orphan", DataType = (int)DataType.Float });
        Assert.Equal(1, GraphEdits.RemoveUnusedInitializers(model.Graph));
        Assert.NotNull(GraphEdits.FindInitializer(model.Graph, "w"));
    }

    [Fact]
    public void SavingToAnotherFolderCopiesExternalDataAndLeavesTheModelAlone()
    {
        using var first = new TempFolder();
        using var second = new TempFolder();
        OnnxModelFile.Save(SmallModel(Weight()), first.File("model.onnx"));
        ModelProto loaded = OnnxModelFile.Load(first.File("model.onnx"));
        string before = loaded.ToString();

        OnnxModelFile.Save(loaded, second.File("copy.onnx"), sourceDirectory: first.Path);

        Assert.Equal(before, loaded.ToString());
        Assert.True(File.Exists(second.File("copy.onnx_data")));
        Directory.Delete(first.Path, recursive: true);
        float[] input = [.. Enumerable.Repeat(1f, 300)];
        Assert.Equal([.. Weight().Select(v => (v + 1f) * 2f)], Run(second.File("copy.onnx"), input));
    }

    [Fact]
    public void SavingAwayFromItsDataWithoutTheSourceIsRefused()
    {
        using var first = new TempFolder();
        using var second = new TempFolder();
        OnnxModelFile.Save(SmallModel(Weight()), first.File("model.onnx"));
        ModelProto loaded = OnnxModelFile.Load(first.File("model.onnx"));
        var error = Assert.Throws<InvalidOperationException>(() => OnnxModelFile.Save(loaded, second.File("model.onnx")));
        Assert.Contains("model.onnx_data", error.Message);
        Assert.False(File.Exists(second.File("model.onnx")));
    }
}
