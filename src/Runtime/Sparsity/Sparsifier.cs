using System.Text.RegularExpressions;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Text;

namespace Serving.Runtime.Sparsity;

public enum PruningMethod
{
    /// <summary>Keep the 2 largest |W| of every group of 4.</summary>
    Magnitude,
    /// <summary>Keep the 2 largest |W_ij| · ‖X_j‖₂, X from calibration text (Sun et al., 2023).</summary>
    Wanda,
}

/// <summary>What <see cref="Sparsifier.Run"/> does; <see cref="Exclude"/> keeps matching layers dense.</summary>
public sealed record SparsifyOptions(string ModelFolder, string OutputFolder, PruningMethod Method)
{
    public string? CalibrationText { get; init; }
    public Regex? Exclude { get; init; }
    public int Threads { get; init; }
}

/// <summary>Sizes before and after: the pruned layers alone, and the whole model folder.</summary>
public sealed record SparsifyReport(int Layers, long LayerBytesBefore, long LayerBytesAfter, long FolderBytesBefore, long FolderBytesAfter);

/// <summary>
/// Writes a copy of a decoder folder whose linear layers are pruned to 2:4 and stored
/// compressed for <c>SparseMatMul24</c>. Tensors stream one at a time into the new data file,
/// so peak memory stays near the largest weight.
/// </summary>
public static class Sparsifier
{
    private static readonly string[] OnnxCandidates = ["onnx/model.onnx", "model.onnx"];

    public static SparsifyReport Run(SparsifyOptions options, IProgress<(long Done, long Total)>? progress = null)
    {
        string source = Path.GetFullPath(options.ModelFolder), output = Path.GetFullPath(options.OutputFolder);
        if (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any())
        {
            throw new IOException($"'{output}' exists and is not empty");
        }

        string relativeOnnx = OnnxCandidates.FirstOrDefault(path => File.Exists(Path.Combine(source, path)))
            ?? throw new FileNotFoundException($"no ONNX model in {source} (looked for {string.Join(", ", OnnxCandidates)})");
        string onnxPath = Path.Combine(source, relativeOnnx);
        ModelProto model = OnnxModelFile.Load(onnxPath);
        IReadOnlyList<SparseTarget> targets = SparseRewrite.FindTargets(model.Graph, options.Exclude);
        if (targets.Count == 0)
        {
            throw new InvalidDataException($"{onnxPath} has no fp32 or fp16 attention or MLP projection MatMuls to prune (after --exclude)");
        }

        Dictionary<string, float[]>? norms = options.Method == PruningMethod.Wanda
            ? WandaCalibration.FeatureNorms(onnxPath, model, targets.Select(t => t.Input), CalibrationTokens(source, options), options.Threads)
            : null;

        long before = FolderBytes(source);
        HashSet<string> dataFiles = ExternalFiles(model.Graph, Path.GetDirectoryName(relativeOnnx)!);
        CopyFolder(source, output, [relativeOnnx, .. dataFiles]);
        string outputOnnx = Path.Combine(output, relativeOnnx);
        var (layerBefore, layerAfter) = WriteTensors(model, targets, norms, Path.GetDirectoryName(onnxPath)!, outputOnnx, progress);
        SparseRewrite.Rewrite(model, targets);
        GraphEdits.RemoveUnusedInitializers(model.Graph);
        OnnxModelFile.Save(model, outputOnnx, externalThresholdBytes: long.MaxValue);
        return new SparsifyReport(targets.Count, layerBefore, layerAfter, before, FolderBytes(output));
    }

    private static List<int> CalibrationTokens(string folder, SparsifyOptions options)
    {
        string path = options.CalibrationText
            ?? throw new ArgumentException("Wanda needs calibration text (--calibration FILE)");
        string text = File.ReadAllText(path);
        return [.. GemmaTokenizer.Load(folder).Encode(text)];
    }

    /// <summary>Replaces each target weight by its compressed pair in place; copies every other external tensor.</summary>
    private static (long Before, long After) WriteTensors(ModelProto model, IReadOnlyList<SparseTarget> targets,
        Dictionary<string, float[]>? norms, string sourceDirectory, string outputOnnx, IProgress<(long Done, long Total)>? progress)
    {
        var byWeight = targets.GroupBy(t => t.Weight.Name).ToDictionary(g => g.Key, g => g.First());
        long total = model.Graph.Initializer.Sum(TensorData.ByteLength), done = 0, before = 0, after = 0;
        Directory.CreateDirectory(Path.GetDirectoryName(outputOnnx)!);
        using ExternalDataWriter writer = ExternalDataWriter.Create(outputOnnx + "_data");
        var tensors = model.Graph.Initializer.ToList();
        model.Graph.Initializer.Clear();
        foreach (TensorProto tensor in tensors)
        {
            done += TensorData.ByteLength(tensor);
            if (byWeight.TryGetValue(tensor.Name, out SparseTarget? target))
            {
                float[]? scale = norms?[target.Input];
                PackedWeight packed = SparseFormat.Pack(SparseFormat.ReadWeight(tensor, sourceDirectory), target.K, target.N, scale);
                var type = (TensorProto.Types.DataType)tensor.DataType;
                foreach (TensorProto compressed in (TensorProto[])[SparseFormat.ValuesTensor(packed, SparseRewrite.ValuesName(tensor), type),
                    SparseFormat.MasksTensor(packed, SparseRewrite.MasksName(tensor))])
                {
                    after += compressed.RawData.Length;
                    writer.MoveToExternal(compressed);
                    model.Graph.Initializer.Add(compressed);
                }

                before += TensorData.ByteLength(tensor);
            }
            else
            {
                if (tensor.DataLocation == TensorProto.Types.DataLocation.External)
                {
                    writer.CopyExternal(tensor, sourceDirectory);
                }

                model.Graph.Initializer.Add(tensor);
            }

            progress?.Report((done, total));
        }

        return (before, after);
    }

    private static HashSet<string> ExternalFiles(GraphProto graph, string onnxDirectory) =>
        [.. graph.Initializer.Where(t => t.DataLocation == TensorProto.Types.DataLocation.External)
            .Select(t => Path.Combine(onnxDirectory, TensorData.ExternalLocation(t)))];

    private static void CopyFolder(string source, string output, HashSet<string> skip)
    {
        foreach (string file in Directory.EnumerateFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            if (skip.Contains(relative) || IsInside(file, output))
            {
                continue;
            }

            string target = Path.Combine(output, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    private static bool IsInside(string path, string folder) =>
        path.StartsWith(folder.TrimEnd('/') + "/", StringComparison.Ordinal);

    private static long FolderBytes(string folder) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories).Sum(file => new FileInfo(file).Length);
}
