using System.Runtime.InteropServices;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Devices;

/// <summary>
/// Whether CUDA can run our models here, and if not, why, in words. ONNX Runtime's own answer
/// is not enough: <c>GetAvailableProviders()</c> lists CUDA whenever the GPU package is in the
/// build, and a provider that cannot load says only "Failed to load shared library" (the
/// missing library is only in its log). So this probes the libraries the provider needs itself.
/// </summary>
public static class CudaProbe
{
    /// <summary>
    /// What ONNX Runtime 1.32's CUDA provider loads (its NEEDED entries, plus cuDNN, which it
    /// opens later): CUDA 13 and cuDNN 9. benchmarks/gpu/check.sh checks the same list.
    /// </summary>
    public static IReadOnlyList<string> RequiredLibraries { get; } =
        ["libcuda.so.1", "libcudart.so.13", "libcublas.so.13", "libcublasLt.so.13", "libcurand.so.10", "libcudnn.so.9"];

    /// <summary>Why CUDA device <paramref name="ordinal"/> cannot run our models, or null when it can.</summary>
    public static string? WhyNot(int ordinal) => WhyNotProvider(ordinal) ?? WhyNotKernels(ordinal);

    /// <summary>The libraries of <see cref="RequiredLibraries"/> the dynamic loader cannot find here.</summary>
    public static IReadOnlyList<string> MissingLibraries()
    {
        var missing = new List<string>();
        foreach (string library in RequiredLibraries)
        {
            if (!NativeLibrary.TryLoad(library, out nint handle))
            {
                missing.Add(library);
                continue;
            }

            NativeLibrary.Free(handle);
        }

        return missing;
    }

    /// <summary>
    /// The package first (the CPU package lists no CUDA provider), then the libraries, before ONNX Runtime
    /// is asked to load the provider: a failed load writes its own error line to stderr, and the
    /// probe's answer should be the only line.
    /// </summary>
    private static string? WhyNotProvider(int ordinal)
    {
        if (!OrtEnv.Instance().GetAvailableProviders().Contains("CUDAExecutionProvider"))
        {
            return "this build's ONNX Runtime package has no CUDA provider (the CPU package; build with -p:OnnxRuntimePackage=Microsoft.ML.OnnxRuntime.Gpu.Linux)";
        }

        IReadOnlyList<string> missing = MissingLibraries();
        if (missing.Count > 0)
        {
            return $"ONNX Runtime's CUDA provider cannot load: {string.Join(", ", missing)} not found (it needs CUDA 13 and cuDNN 9)";
        }

        try
        {
            using var options = new SessionOptions();
            options.AppendExecutionProvider_CUDA(ordinal);
            return null;
        }
        catch (OnnxRuntimeException e)
        {
            return $"ONNX Runtime's CUDA provider cannot load: {e.Message}";
        }
    }

    /// <summary>Our custom ops' CUDA kernels (libserving_kernels.so): the driver, device, sm_80 and the build's PTX.</summary>
    private static string? WhyNotKernels(int ordinal)
    {
        string? reason = SparseKernels.CudaWhyNot(ordinal);
        return string.IsNullOrEmpty(reason) ? null : $"our CUDA kernels cannot run: {reason}";
    }
}
