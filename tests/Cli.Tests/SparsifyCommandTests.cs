using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

public sealed class SparsifyCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model;

    public SparsifyCommandTests()
    {
        _model = _temp.Sub("tiny");
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", _model, "--seed", "5").ExitCode);
    }

    [Fact]
    public void PrintsBytesBeforeAndAfterAndTheModelGenerates()
    {
        string output = _temp.Sub("sparse");
        var result = ServingProcess.Run("sparsify", "--model", _model, "--out", output, "--method", "magnitude");

        Assert.Equal(0, result.ExitCode);
        string[] lines = result.Stdout.Trim().Split('\n');
        Assert.Equal("layers: 28", lines[0]);
        Assert.Equal("layer bytes: 589824 -> 313344 (53.1%)", lines[1]);
        Assert.StartsWith("folder bytes: ", lines[2]);

        var generated = ServingProcess.Run("generate", "--model", output, "--prompt", "In the beginning", "--max-tokens", "6", "--json");
        Assert.Equal(0, generated.ExitCode);
        Assert.Equal(6, JsonNode.Parse(generated.Stdout)!["token_ids"]!.AsArray().Count);
    }

    [Fact]
    public void EveryKernelGeneratesTheSameTokens()
    {
        // A CPU without AVX2 (or AVX-512) runs the portable (or AVX2) kernel: same greedy tokens.
        string output = _temp.Sub("isa");
        Assert.Equal(0, ServingProcess.Run("sparsify", "--model", _model, "--out", output).ExitCode);
        string Tokens(string isa) => JsonNode.Parse(ServingProcess.Run(new Dictionary<string, string> { ["SERVING_SPARSE24_ISA"] = isa },
            "generate", "--model", output, "--prompt", "In the beginning", "--max-tokens", "12", "--json").Stdout)!["token_ids"]!.ToJsonString();

        string portable = Tokens("portable");
        Assert.Equal(portable, Tokens(""));
        if (File.ReadAllText("/proc/cpuinfo").Contains(" avx2", StringComparison.Ordinal))
        {
            Assert.Equal(portable, Tokens("avx2"));
        }
    }

    [Fact]
    public void DeviceAutoFallsBackToTheCpuWithTheReasonAndTheSameTokens()
    {
        // The test suite's build has ONNX Runtime's CPU package, so CUDA never runs here (GPU machine
        // or not): --device auto says why on one line and runs the CPU kernels, the same tokens as
        // --device cpu. (benchmarks/gpu/check.sh builds the GPU package and runs CUDA.)
        string output = _temp.Sub("auto");
        Assert.Equal(0, ServingProcess.Run("sparsify", "--model", _model, "--out", output).ExitCode);
        ServingProcess.Result Generate(string device) =>
            ServingProcess.Run("generate", "--model", output, "--device", device, "--prompt", "In the beginning", "--max-tokens", "12", "--json");

        var cpu = Generate("cpu");
        var auto = Generate("auto");
        Assert.Equal(0, auto.ExitCode);
        Assert.Equal(JsonNode.Parse(cpu.Stdout)!["token_ids"]!.ToJsonString(), JsonNode.Parse(auto.Stdout)!["token_ids"]!.ToJsonString());
        Assert.Contains("Device cpu: models run on cpu", cpu.Stderr);
        Assert.Single(auto.Stderr.Split('\n'), line => line.Contains("models run on the CPU: CUDA is not available (", StringComparison.Ordinal));
        Assert.Contains("has no CUDA provider (the CPU package", auto.Stderr);
    }

    [Fact]
    public void DeviceCudaThatCannotRunFailsWithTheReason()
    {
        // The CPU package (see above): cuda:0 cannot run on any machine, and start fails saying why.
        var result = ServingProcess.Run("generate", "--model", _model, "--device", "cuda:0", "--prompt", "In", "--max-tokens", "2");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--device: device cuda:0 cannot run: this build's ONNX Runtime package has no CUDA provider", result.Stderr);
    }

    [Fact]
    public void AnUnknownDeviceFailsWithAClearMessage()
    {
        var result = ServingProcess.Run("generate", "--model", _model, "--device", "tpu", "--prompt", "In", "--max-tokens", "2");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("--device: device 'tpu' is not auto, cpu, cuda or cuda:N", result.Stderr);
    }

    [Fact]
    public void AnUnknownForcedKernelFailsWithAClearMessage()
    {
        string output = _temp.Sub("bad-isa");
        Assert.Equal(0, ServingProcess.Run("sparsify", "--model", _model, "--out", output).ExitCode);
        var result = ServingProcess.Run(new Dictionary<string, string> { ["SERVING_SPARSE24_ISA"] = "sse9" },
            "generate", "--model", output, "--prompt", "In", "--max-tokens", "2");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("SERVING_SPARSE24_ISA='sse9' is not portable, avx2 or avx512", result.Stderr);
    }

    [Fact]
    public void WandaUsesTheCalibrationText()
    {
        string text = _temp.Sub("calibration.txt");
        File.WriteAllText(text, "In the beginning God created the heaven and the earth.");
        var result = ServingProcess.Run("sparsify", "--model", _model, "--out", _temp.Sub("wanda"), "--method", "wanda", "--calibration", text);
        Assert.Equal(0, result.ExitCode);
        Assert.StartsWith("layers: 28", result.Stdout);
    }

    [Theory]
    [InlineData("--method", "wanda")]
    [InlineData("--method", "sparsegpt")]
    [InlineData("--exclude", "(")]
    public void BadArgumentsExitWithCode2(params string[] extra)
    {
        var result = ServingProcess.Run(["sparsify", "--model", _model, "--out", _temp.Sub("bad"), .. extra]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("error", result.Stderr);
        Assert.False(Directory.Exists(_temp.Sub("bad")));
    }

    [Fact]
    public void ANonEmptyOutputFolderIsRefused()
    {
        var result = ServingProcess.Run("sparsify", "--model", _model, "--out", _model);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is not an empty folder", result.Stderr);
    }

    public void Dispose() => _temp.Dispose();
}
