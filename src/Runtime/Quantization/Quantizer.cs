using Serving.Runtime.Models;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using DataType = Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType;

namespace Serving.Runtime.Quantization;

/// <summary>What <see cref="Quantizer.Run"/> writes: <see cref="Dtype"/> is q4, q8 or fp16 (<see cref="Quantizer.Dtypes"/>).</summary>
public sealed record QuantizeOptions(string ModelFolder, string OutputFolder, string Dtype)
{
    /// <summary>
    /// Weights per block along K. 64 by default: with its fp32 scale a 4-bit weight then costs 4.5
    /// bits, as in llama.cpp's q4_0 (blocks of 32 with fp16 scales; MatMulNBits' scales have the
    /// activations' type). Measured (docs/BENCHMARKS.md): gemma3-1b q4 decode 1.22x llama.cpp's q4_0
    /// at 64 against 1.05x at 32, kjv-gemma3 perplexity +0.05%. 32 reproduces onnx-community's layout.
    /// </summary>
    public const int DefaultBlockSize = 64;

    public int BlockSize { get; init; } = DefaultBlockSize;

    /// <summary>No zero points (ONNX Runtime's default 2^(bits−1)); false stores one per block.</summary>
    public bool Symmetric { get; init; } = true;

    /// <summary>MatMulNBits' accuracy_level: 4 (int8 activations) is the only CPU setting that takes the VNNI kernels.</summary>
    public int AccuracyLevel { get; init; } = 4;

    /// <summary><see cref="Quantizer.Methods"/>: rtn rounds each block to nearest; awq first scales input channels by calibration activations (<see cref="ActivationAwareScaling"/>).</summary>
    public string Method { get; init; } = "rtn";

    /// <summary>The text whose activations awq weighs the channels by.</summary>
    public string? CalibrationText { get; init; }

    /// <summary>
    /// Bits of the embedding and its tied LM head (4 or 8); null: the variant's. llama.cpp's q4_0
    /// keeps them at 8 bits: better quality (kjv-gemma3: see docs/BENCHMARKS.md), more bytes to read per token.
    /// </summary>
    public int? EmbeddingBits { get; init; }

    /// <summary>Tokens of <see cref="CalibrationText"/> that awq runs at most.</summary>
    public int CalibrationTokens { get; init; } = 4096;

    /// <summary>The first thing wrong with the options (not the folders), or null.</summary>
    public string? Validate() =>
        !Quantizer.Dtypes.Contains(Dtype) ? $"unknown dtype '{Dtype}' (quantize writes {string.Join(", ", Quantizer.Dtypes)})"
        : !BlockSpec.IsValidBlockSize(BlockSize) ? $"block size {BlockSize} is not a power of two ≥ 16"
        : AccuracyLevel is < 0 or > 4 ? $"accuracy level {AccuracyLevel} is not 0–4"
        : !Quantizer.Methods.Contains(Method) ? $"unknown method '{Method}' (quantize knows {string.Join(", ", Quantizer.Methods)})"
        : Method == "awq" && Dtype == "fp16" ? "awq scales the weights of 4- and 8-bit variants; fp16 is a plain conversion"
        : Method == "awq" && CalibrationText is null ? "--method awq needs --calibration FILE (text whose activations weigh the channels)"
        : Method == "awq" && !File.Exists(CalibrationText) ? $"calibration file not found: {CalibrationText}"
        : CalibrationTokens < 1 ? "calibration tokens must be at least 1"
        : EmbeddingBits is not (null or 4 or 8) ? $"embedding bits {EmbeddingBits} is not 4 or 8"
        : EmbeddingBits is not null && Dtype == "fp16" ? "embedding bits apply to q4 and q8 variants"
        : null;
}

/// <summary>The variant written: its file, what was quantized, and bytes before and after; for awq, the search's result per group.</summary>
public sealed record QuantizeReport(string OnnxFile, int Layers, bool Embedding, bool TiedHead,
    long WeightBytesBefore, long WeightBytesAfter, long VariantBytes, long FolderBytes,
    IReadOnlyList<ActivationAwareScaling.GroupResult>? Awq = null);

/// <summary>
/// <c>serving quantize</c>: copies a decoder folder and adds one weight variant beside its
/// <c>onnx/model.onnx</c>, named as transformers.js names it (<see cref="OnnxVariant"/>). q4 and q8
/// are round-to-nearest blocks (<see cref="BlockQuantizer"/>) run by MatMulNBits and
/// GatherBlockQuantized; fp16 stores fp16 weights behind Cast nodes. The folder is written beside
/// the output under a temporary name and renamed when complete, so a failure leaves no output.
/// </summary>
public static class Quantizer
{
    public static IReadOnlyList<string> Dtypes { get; } = ["q4", "q8", "fp16"];

    public static IReadOnlyList<string> Methods { get; } = ["rtn", "awq"];

    private static readonly string[] OnnxCandidates = ["onnx/model.onnx", "model.onnx"];

    public static QuantizeReport Run(QuantizeOptions options, IProgress<(long Done, long Total)>? progress = null,
        IProgress<(long Done, long Total)>? awqProgress = null)
    {
        if (options.Validate() is { } invalid)
        {
            throw new ArgumentException(invalid, nameof(options));
        }

        string source = Path.GetFullPath(options.ModelFolder), output = Path.GetFullPath(options.OutputFolder).TrimEnd('/');
        if (File.Exists(output) || (Directory.Exists(output) && Directory.EnumerateFileSystemEntries(output).Any()))
        {
            throw new IOException($"'{output}' exists and is not an empty folder");
        }

        string relativeOnnx = OnnxCandidates.FirstOrDefault(path => File.Exists(Path.Combine(source, path)))
            ?? throw new FileNotFoundException($"no ONNX model in {source} (looked for {string.Join(", ", OnnxCandidates)})");
        string onnxPath = Path.Combine(source, relativeOnnx);
        ModelProto model = OnnxModelFile.Load(onnxPath);
        if (QuantizeRewrite.IsQuantized(model.Graph))
        {
            throw new InvalidDataException($"{onnxPath} is already quantized (it has MatMulNBits or GatherBlockQuantized nodes): quantize the fp32 model");
        }

        var plan = QuantizePlan.Find(model.Graph, onnxPath, options.Dtype);
        ActivationAwareScaling.Scales? scales = options.Method == "awq"
            ? ActivationAwareScaling.Search(onnxPath, model, plan.Linear, CalibrationTokens(source, options),
                new BlockSpec(options.Dtype == "q8" ? 8 : 4, options.BlockSize, options.Symmetric), progress: awqProgress)
            : null;
        string variant = Path.Combine(Path.GetDirectoryName(relativeOnnx)!, Path.GetFileName(OnnxVariant.FileName(options.Dtype)));
        string temporary = Path.Combine(Path.GetDirectoryName(output)!, $".{Path.GetFileName(output)}.{Guid.NewGuid():N}.tmp");
        try
        {
            CopyFolder(source, temporary, skip: variant);
            var writer = new VariantWriter(plan, options, Path.GetDirectoryName(onnxPath)!, scales);
            var (before, after) = writer.Write(model, Path.Combine(temporary, variant), progress);
            long variantBytes = FolderBytes(temporary, Path.GetFileName(variant));
            if (Directory.Exists(output))
            {
                Directory.Delete(output);
            }

            Directory.Move(temporary, output);
            return new QuantizeReport(variant, plan.Linear.Count, plan.Embedding is not null, plan.Embedding?.Head is not null,
                before, after, variantBytes, FolderBytes(output, null), scales?.Groups);
        }
        catch
        {
            if (Directory.Exists(temporary))
            {
                Directory.Delete(temporary, recursive: true);
            }

            throw;
        }
    }

    /// <summary>
    /// Writes the <paramref name="dtype"/> variant (default options: RTN, block 64, symmetric) into
    /// <paramref name="folder"/> itself, beside its fp32 <c>onnx/model.onnx</c>, as a Hugging Face
    /// repository holds them (<c>serving models create --dtypes</c>). The variant's two files are
    /// written under a temporary folder and moved in when both are complete.
    /// </summary>
    public static void AddVariant(string folder, string dtype, IProgress<(long Done, long Total)>? progress = null)
    {
        var options = new QuantizeOptions(folder, folder, dtype);
        if (options.Validate() is { } invalid)
        {
            throw new ArgumentException(invalid, nameof(dtype));
        }

        string onnxPath = Path.Combine(folder, OnnxCandidates[0]);
        ModelProto model = OnnxModelFile.Load(onnxPath);
        var plan = QuantizePlan.Find(model.Graph, onnxPath, dtype);
        string variant = Path.Combine(Path.GetDirectoryName(onnxPath)!, Path.GetFileName(OnnxVariant.FileName(dtype)));
        string temporary = Path.Combine(folder, $".{dtype}.{Guid.NewGuid():N}.tmp");
        try
        {
            string written = Path.Combine(temporary, Path.GetFileName(variant));
            new VariantWriter(plan, options, Path.GetDirectoryName(onnxPath)!).Write(model, written, progress);
            File.Move(written + "_data", variant + "_data", overwrite: true);
            File.Move(written, variant, overwrite: true);
        }
        finally
        {
            if (Directory.Exists(temporary))
            {
                Directory.Delete(temporary, recursive: true);
            }
        }
    }

    /// <summary>The first <see cref="QuantizeOptions.CalibrationTokens"/> tokens of the calibration text, as the model's tokenizer reads it.</summary>
    private static List<int> CalibrationTokens(string folder, QuantizeOptions options)
    {
        string text = File.ReadAllText(options.CalibrationText!);
        List<int> tokens = [.. Text.GemmaTokenizer.Load(folder).Encode(text).Take(options.CalibrationTokens)];
        return tokens.Count > 0 ? tokens : throw new InvalidDataException($"the calibration text {options.CalibrationText} has no tokens");
    }

    /// <summary>Copies every file but the variant being replaced; listed first, so an output inside the source is not copied into itself.</summary>
    private static void CopyFolder(string source, string output, string skip)
    {
        string inside = output + Path.DirectorySeparatorChar;
        foreach (string file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            string relative = Path.GetRelativePath(source, file);
            if (relative == skip || relative == skip + "_data" || file.StartsWith(inside, StringComparison.Ordinal))
            {
                continue;
            }

            string target = Path.Combine(output, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
        }
    }

    /// <summary>Bytes of every file in the folder, or of the files whose name starts with <paramref name="prefix"/>.</summary>
    private static long FolderBytes(string folder, string? prefix) =>
        Directory.EnumerateFiles(folder, "*", SearchOption.AllDirectories)
            .Where(file => prefix is null || Path.GetFileName(file).StartsWith(prefix, StringComparison.Ordinal))
            .Sum(file => new FileInfo(file).Length);
}

/// <summary>The tensors a dtype changes: linear projections, the embedding (and its tied head), and for fp16 every other <c>*.weight</c>.</summary>
internal sealed record QuantizePlan(IReadOnlyList<SparseTarget> Linear, EmbeddingTarget? Embedding, IReadOnlySet<string> Fp16)
{
    public static QuantizePlan Find(GraphProto graph, string onnxPath, string dtype)
    {
        var linear = SparseRewrite.FindTargets(graph).Where(t => t.Weight.DataType == (int)DataType.Float).ToList();
        EmbeddingTarget? embedding = QuantizeRewrite.FindEmbedding(graph);
        if (linear.Count == 0 && embedding is null)
        {
            throw new InvalidDataException($"{onnxPath} has no fp32 attention or MLP projection MatMuls and no fp32 embedding to quantize");
        }

        var fp16 = new HashSet<string>(StringComparer.Ordinal);
        if (dtype == "fp16")
        {
            fp16.UnionWith(linear.Select(t => t.Weight.Name));
            fp16.UnionWith(graph.Initializer.Where(t => t.DataType == (int)DataType.Float
                && (t.Name.EndsWith(".weight", StringComparison.Ordinal) || t.Name == embedding?.Weight.Name)).Select(t => t.Name));
        }

        return new QuantizePlan(linear, embedding, fp16);
    }
}
