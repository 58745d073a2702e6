using System.CommandLine;
using Serving.Runtime.Models;

namespace Serving.Cli;

/// <summary><c>--dtype</c> of the commands that load a decoder: which weight variant of the folder to open.</summary>
internal static class DtypeOption
{
    public static Option<string?> Create()
    {
        var dtype = new Option<string?>("--dtype")
        {
            Description = "Weight variant, as transformers.js names it (q4 → onnx/model_q4.onnx, q8 → model_quantized, fp16, fp32); "
                + "default: config.json's transformers.js_config.dtype, else onnx/model.onnx",
        };
        dtype.AcceptOnlyFromAmong([.. OnnxVariant.Dtypes]);
        return dtype;
    }
}
