using Serving.Runtime.Models.Clip;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Tests.Models.Clip;

/// <summary>The Optimum layout: one <c>model.onnx</c> holding both towers (inputs input_ids and pixel_values).</summary>
public sealed class ClipSingleFileTests(ClipModelFixture fixture) : IClassFixture<ClipModelFixture>
{
    [Fact]
    public void ASingleFileWithBothTowersGivesTheSameEmbeddings()
    {
        using var folder = new TempFolder();
        foreach (string file in Directory.GetFiles(fixture.Folder))
        {
            File.Copy(file, Path.Combine(folder.Path, Path.GetFileName(file)));
        }

        string source = Path.Combine(fixture.Folder, "onnx");
        ModelProto text = OnnxModelFile.Load(Path.Combine(fixture.Folder, ClipModelWriter.TextFile));
        ModelProto vision = OnnxModelFile.Load(Path.Combine(fixture.Folder, ClipModelWriter.VisionFile));
        // Node, value and weight names of the towers are scoped (text_model/…, vision_model/…), so
        // they never clash; the batch dimensions get Optimum's separate names, since ONNX Runtime
        // holds one dim_param to one size.
        RenameBatch(text.Graph, "text_batch_size");
        RenameBatch(vision.Graph, "image_batch_size");
        text.Graph.Node.AddRange(vision.Graph.Node);
        text.Graph.Initializer.AddRange(vision.Graph.Initializer);
        text.Graph.Input.AddRange(vision.Graph.Input);
        text.Graph.Output.AddRange(vision.Graph.Output);
        OnnxModelFile.Save(text, folder.File("model.onnx"), sourceDirectory: source);

        using ClipModel single = ClipModel.Load(folder.Path);
        Assert.Equal("single-file", single.Layout);
        Assert.Equal("split", fixture.Model.Layout);
        Assert.Equal(fixture.Model.EmbedTexts(["a cat", "two dogs on a sofa"]), single.EmbedTexts(["a cat", "two dogs on a sofa"]), Close);

        var random = new Random(2);
        float[] pixels = [.. Enumerable.Range(0, 2 * single.Processor.ValuesPerImage).Select(_ => (float)random.NextDouble())];
        Assert.Equal(fixture.Model.EmbedPixels(pixels, 2), single.EmbedPixels(pixels, 2), Close);
    }

    private static void RenameBatch(GraphProto graph, string name)
    {
        foreach (ValueInfoProto value in graph.Input.Concat(graph.Output))
        {
            foreach (TensorShapeProto.Types.Dimension dim in value.Type.TensorType.Shape.Dim.Where(d => d.DimParam == "batch_size"))
            {
                dim.DimParam = name;
            }
        }
    }

    private static bool Close(float[] a, float[] b) => a.Zip(b).All(p => Math.Abs(p.First - p.Second) < 1e-5f);
}
