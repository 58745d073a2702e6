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
    public void TheCudaOptInFallsBackToTheCpuKernelsWithoutADriver()
    {
        // SERVING_SPARSE24_DEVICE=cuda on a machine without a GPU: one line on stderr, the CPU
        // kernels, the same tokens. With a GPU (sm_80+) the CUDA kernels must agree instead.
        string output = _temp.Sub("cuda");
        Assert.Equal(0, ServingProcess.Run("sparsify", "--model", _model, "--out", output).ExitCode);
        ServingProcess.Result Generate(string device) => ServingProcess.Run(new Dictionary<string, string> { ["SERVING_SPARSE24_DEVICE"] = device },
            "generate", "--model", output, "--prompt", "In the beginning", "--max-tokens", "12", "--json");

        var cpu = Generate("cpu");
        var cuda = Generate("cuda");
        Assert.Equal(0, cuda.ExitCode);
        Assert.Equal(JsonNode.Parse(cpu.Stdout)!["token_ids"]!.ToJsonString(), JsonNode.Parse(cuda.Stdout)!["token_ids"]!.ToJsonString());
        if (!File.Exists("/proc/driver/nvidia/version"))
        {
            Assert.Contains("SERVING_SPARSE24_DEVICE=cuda, but no CUDA driver: cannot open libcuda.so.1", cuda.Stderr);
            Assert.Contains("using the CPU kernels", cuda.Stderr);
        }
    }

    [Fact]
    public void AnUnknownDeviceFailsWithAClearMessage()
    {
        string output = _temp.Sub("bad-device");
        Assert.Equal(0, ServingProcess.Run("sparsify", "--model", _model, "--out", output).ExitCode);
        var result = ServingProcess.Run(new Dictionary<string, string> { ["SERVING_SPARSE24_DEVICE"] = "tpu" },
            "generate", "--model", output, "--prompt", "In", "--max-tokens", "2");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("SERVING_SPARSE24_DEVICE='tpu' is not cpu or cuda", result.Stderr);
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
