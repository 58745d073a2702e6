using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Onnx.Proto;

namespace Serving.Runtime.Sparsity;

/// <summary>
/// The native custom-op library (src/KernelsNative, <c>libserving_kernels.so</c>), built by
/// the runtime's MSBuild target and copied beside <c>Serving.Runtime.dll</c>. Sessions
/// register it only for models that import the op's domain, so dense models never need it.
/// </summary>
public static class SparseKernels
{
    public const string LibraryFile = "libserving_kernels.so";

    /// <summary>Where the library is expected: beside this assembly (the app's folder when deployed).</summary>
    public static string LibraryPath => Path.Combine(Path.GetDirectoryName(typeof(SparseKernels).Assembly.Location) ?? AppContext.BaseDirectory, LibraryFile);

    /// <summary>
    /// Whether the model at <paramref name="onnxPath"/> imports <see cref="SparseFormat.Domain"/>.
    /// Reads only the model's top-level fields: the graph is skipped, not parsed.
    /// </summary>
    public static bool UsesSparseOps(string onnxPath)
    {
        try
        {
            return ImportsDomain(onnxPath);
        }
        catch (InvalidProtocolBufferException)
        {
            // Not a readable model: ONNX Runtime opens it next and reports the damage itself.
            return false;
        }
    }

    private static bool ImportsDomain(string onnxPath)
    {
        using FileStream stream = File.OpenRead(onnxPath);
        using var input = new CodedInputStream(stream);
        const int opsetImportField = 8;  // ModelProto.opset_import
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            if (WireFormat.GetTagFieldNumber(tag) == opsetImportField)
            {
                var opset = new OperatorSetIdProto();
                input.ReadMessage(opset);
                if (opset.Domain == SparseFormat.Domain)
                {
                    return true;
                }
            }
            else
            {
                input.SkipLastField();
            }
        }

        return false;
    }

    /// <summary>
    /// The ISA the library's kernels pick in this process (<c>portable</c>, <c>avx2</c>, <c>avx512</c>;
    /// <c>invalid</c> when SERVING_SPARSE24_ISA names none), asked from the library itself, or
    /// null when the library is not there.
    /// </summary>
    public static unsafe string? KernelIsa() =>
        Export("ServingSparse24Isa") is { } export ? System.Runtime.InteropServices.Marshal.PtrToStringUTF8(((delegate* unmanaged<nint>)export)()) : null;

    /// <summary>
    /// Why the library's CUDA kernels cannot run on device <paramref name="ordinal"/> (no driver, no such
    /// device, older than sm_80, a build without PTX), asked from the library; empty when they can.
    /// </summary>
    public static unsafe string CudaWhyNot(int ordinal) =>
        Export("ServingCudaProbe") is { } export
            ? System.Runtime.InteropServices.Marshal.PtrToStringUTF8(((delegate* unmanaged<int, nint>)export)(ordinal)) ?? ""
            : $"{LibraryFile} is not in {Path.GetDirectoryName(LibraryPath)}";

    /// <summary>An exported function of the library.</summary>
    /// <exception cref="InvalidOperationException">The library or the export is not there.</exception>
    internal static nint RequireExport(string name) =>
        Export(name) ?? throw new InvalidOperationException($"{LibraryFile} in {Path.GetDirectoryName(LibraryPath)} is missing or has no {name}: build src/Runtime on Linux with cmake installed");

    /// <summary>An exported function of the library, or null when the library or the export is not there.</summary>
    private static nint? Export(string name)
    {
        // The library stays loaded: ONNX Runtime loads the same file for sparse models.
        if (!File.Exists(LibraryPath) || !System.Runtime.InteropServices.NativeLibrary.TryLoad(LibraryPath, out nint library)
            || !System.Runtime.InteropServices.NativeLibrary.TryGetExport(library, name, out nint export))
        {
            return null;
        }

        return export;
    }

    /// <summary>Registers the library on <paramref name="options"/> when the model needs it; returns whether it did.</summary>
    /// <exception cref="FileNotFoundException">The model needs the library and it is missing.</exception>
    public static bool RegisterIfUsed(SessionOptions options, string onnxPath)
    {
        if (!UsesSparseOps(onnxPath))
        {
            return false;
        }

        string library = LibraryPath;
        if (!File.Exists(library))
        {
            throw new FileNotFoundException(
                $"the model uses {SparseFormat.OpType} ({SparseFormat.Domain}) but {LibraryFile} is not in {Path.GetDirectoryName(library)}: build src/Runtime on Linux with cmake installed", library);
        }

        options.RegisterCustomOpLibrary(library);
        return true;
    }
}
