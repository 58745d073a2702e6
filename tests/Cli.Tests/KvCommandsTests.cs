using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

/// <summary>calibrate-kv, generate --kv-policy and eval-kv on a tiny model (16-token window, so budgets start at 15).</summary>
public sealed class KvCommandsTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model, _text;

    public KvCommandsTests()
    {
        _model = _temp.Sub("tiny");
        // Seed 1 generates 300 tokens of "In the beginning" without EOS, which the eviction test needs (seed 5 stops at 139 since the generator fix).
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", _model, "--seed", "1").ExitCode);
        _text = _temp.Sub("calibration.txt");
        File.WriteAllText(_text, string.Join(' ', Enumerable.Range(0, 300).Select(i => $"word{i % 37} and the earth {i}.")));
    }

    private ServingProcess.Result Calibrate() => ServingProcess.Run("calibrate-kv", "--model", _model, "--text", _text, "--max-tokens", "700");

    [Fact]
    public void CalibrateWritesTheFileAndTriAttentionGenerationStaysWithinItsCap()
    {
        var calibrated = Calibrate();
        Assert.True(calibrated.ExitCode == 0, calibrated.Stderr);
        Assert.Contains("tokens: 700", calibrated.Stdout);
        Assert.Contains("query concentration", calibrated.Stdout);
        Assert.True(File.Exists(Path.Combine(_model, "kv_calibration.json")));

        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "In the beginning", "--max-tokens", "200", "--json",
            "--kv-policy", "triattention", "--kv-budget", "16");
        Assert.True(result.ExitCode == 0, result.Stderr);
        var json = JsonNode.Parse(result.Stdout)!.AsObject();
        int length = json["prompt_token_ids"]!.AsArray().Count + json["token_ids"]!.AsArray().Count - 1;
        // Generation may stop at EOS; past the cap of 16 + 128 tokens the cache is compressed.
        Assert.Equal(Math.Min(length, 16 + 128), json["kv_tokens_peak"]!.GetValue<int>());
        Assert.Equal(length > 16 + 128, json["kv_evicted_tokens"]!.GetValue<int>() > 0);
    }

    [Fact]
    public void GenerateReportsThePeakCacheAndEvictsPastTheCap()
    {
        var full = JsonNode.Parse(ServingProcess.Run("generate", "--model", _model, "--prompt", "In the beginning", "--max-tokens", "300", "--json").Stdout)!;
        var window = JsonNode.Parse(ServingProcess.Run("generate", "--model", _model, "--prompt", "In the beginning", "--max-tokens", "300", "--json",
            "--kv-policy", "window", "--kv-budget", "32").Stdout)!;
        int length = full["prompt_token_ids"]!.AsArray().Count + full["token_ids"]!.AsArray().Count - 1;
        Assert.Equal(length, full["kv_tokens_peak"]!.GetValue<int>());
        Assert.Equal(32 + 128, window["kv_tokens_peak"]!.GetValue<int>());
        Assert.True(window["kv_evicted_tokens"]!.GetValue<int>() > 0);
        Assert.True(window["kv_bytes_peak"]!.GetValue<long>() < full["kv_bytes_peak"]!.GetValue<long>());
    }

    [Theory]
    [InlineData("--kv-policy", "fifo", "unknown")]
    [InlineData("--kv-policy", "triattention", "calibrate-kv")]
    [InlineData("--kv-budget", "8", "at least 15")]
    public void BadKvArgumentsExit2WithTheReason(string option, string value, string reason)
    {
        string[] policy = option == "--kv-budget" ? ["--kv-policy", "window"] : [];
        var result = ServingProcess.Run(["generate", "--model", _model, "--prompt", "x", option, value, .. policy]);
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(reason, result.Stderr, StringComparison.OrdinalIgnoreCase);
    }

    [Fact]
    public void EvalKvComparesPoliciesWithFullAttention()
    {
        Assert.Equal(0, Calibrate().ExitCode);
        string prompts = _temp.Sub("prompts.txt");
        File.WriteAllLines(prompts, [string.Join(' ', Enumerable.Range(0, 40).Select(i => $"verse {i} of the book")), "", "And God said, let there be light"]);
        var result = ServingProcess.Run("eval-kv", "--model", _model, "--prompts", prompts, "--budgets", "16,64", "--policies", "triattention,window", "--gen", "40", "--json");
        Assert.True(result.ExitCode == 0, result.Stderr);
        JsonArray rows = JsonNode.Parse(result.Stdout)!.AsArray();
        Assert.Equal(5, rows.Count);
        Assert.Equal("none", rows[0]!["policy"]!.GetValue<string>());
        Assert.Equal(1.0, rows[0]!["top1_agreement"]!.GetValue<double>());
        Assert.Equal(80, rows[0]!["steps"]!.GetValue<int>());
        foreach (JsonNode? row in rows.Skip(1))
        {
            Assert.InRange(row!["top1_agreement"]!.GetValue<double>(), 0, 1);
            Assert.True(row["mean_kl"]!.GetValue<double>() >= 0);
            Assert.True(row["kv_tokens_peak"]!.GetValue<int>() <= row["budget"]!.GetValue<int>() + 128);
        }

        // The first prompt (~200 tokens) passes the cap of budget 16, so its cache is smaller than full attention's.
        Assert.True(rows[1]!["kv_bytes_peak"]!.GetValue<long>() < rows[0]!["kv_bytes_peak"]!.GetValue<long>());
    }

    [Fact]
    public void EvalKvRefusesABadBudgetList()
    {
        var result = ServingProcess.Run("eval-kv", "--model", _model, "--prompts", _text, "--budgets", "16,x", "--policies", "window");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("'x'", result.Stderr);
    }

    public void Dispose() => _temp.Dispose();
}
