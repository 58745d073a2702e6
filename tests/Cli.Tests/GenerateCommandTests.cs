using System.Text.Json.Nodes;

namespace Serving.Cli.Tests;

public sealed class GenerateCommandTests : IDisposable
{
    private readonly TempFolder _temp = new();
    private readonly string _model;

    public GenerateCommandTests()
    {
        _model = _temp.Sub("tiny");
        Assert.Equal(0, ServingProcess.Run("models", "create", "--preset", "tiny", "--out", _model, "--seed", "5").ExitCode);
    }

    [Fact]
    public void JsonPrintsOneObjectWithIdsTextAndTimings()
    {
        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "In the beginning", "--max-tokens", "12", "--json");

        Assert.Equal(0, result.ExitCode);
        var json = JsonNode.Parse(result.Stdout)!.AsObject();
        int[] prompt = [.. json["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        Assert.Equal(2, prompt[0]);
        Assert.True(prompt.Length > 1);
        var tokens = json["token_ids"]!.AsArray();
        Assert.True(tokens.Count is > 0 and <= 12);
        Assert.Equal(tokens.Count == 12 ? "length" : "stop", json["finish_reason"]!.GetValue<string>());
        Assert.NotNull(json["text"]!.GetValue<string>());
        JsonObject timings = json["timings"]!.AsObject();
        Assert.True(timings["load_ms"]!.GetValue<double>() > 0);
        Assert.True(timings["prefill_ms"]!.GetValue<double>() > 0);
        Assert.True(timings["decode_tokens_per_second"]!.GetValue<double>() >= 0);
    }

    [Fact]
    public void TheKvCacheDtypeIsFp16UnlessAskedAndAnUnknownOneIsAUsageError()
    {
        JsonObject Run(params string[] extra) => JsonNode.Parse(ServingProcess.Run(
            ["generate", "--model", _model, "--prompt", "In the beginning", "--max-tokens", "16", "--json", .. extra]).Stdout)!.AsObject();

        static (string Ids, long KvBytes) Of(JsonObject json) => (json["token_ids"]!.ToJsonString(), json["kv_bytes_peak"]!.GetValue<long>());
        var (byDefault, fp16, fp32) = (Of(Run()), Of(Run("--kv-cache-dtype", "fp16")), Of(Run("--kv-cache-dtype", "fp32")));
        Assert.Equal(fp16, byDefault);
        Assert.Equal(2 * fp16.KvBytes, fp32.KvBytes);

        var bad = ServingProcess.Run("generate", "--model", _model, "--prompt", "In", "--max-tokens", "2", "--kv-cache-dtype", "fp8");
        Assert.Equal(2, bad.ExitCode);
        Assert.Contains("fp8", bad.Stderr);
    }

    [Fact]
    public void ChatWrapsThePromptInOneUserTurnWithOneBos()
    {
        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "Who made the earth?", "--max-tokens", "4", "--json", "--chat");
        Assert.Equal(0, result.ExitCode);
        int[] ids = [.. JsonNode.Parse(result.Stdout)!["prompt_token_ids"]!.AsArray().Select(n => n!.GetValue<int>())];
        const int Bos = 2, StartOfTurn = 5, EndOfTurn = 6;
        Assert.Equal([Bos, StartOfTurn], ids[..2]);
        Assert.Single(ids, Bos);
        Assert.Equal(2, ids.Count(id => id == StartOfTurn));
        Assert.Single(ids, EndOfTurn);
    }

    [Fact]
    public void GreedyIsRepeatableAndSeedsMakeSamplingRepeatable()
    {
        string Ids(params string[] extra) => JsonNode.Parse(ServingProcess.Run(
            ["generate", "--model", _model, "--prompt", "Let there be light", "--max-tokens", "10", "--json", .. extra]).Stdout)!["token_ids"]!.ToJsonString();

        Assert.Equal(Ids(), Ids("--temperature", "0"));
        Assert.Equal(Ids("--temperature", "1.5", "--seed", "4"), Ids("--temperature", "1.5", "--seed", "4"));
        Assert.NotEqual(Ids("--temperature", "1.5", "--seed", "4"), Ids("--temperature", "1.5", "--seed", "5"));
    }

    [Fact]
    public void PlainOutputStreamsTheSameTextAsJsonAndTimingsOnStderr()
    {
        string[] args = ["generate", "--model", _model, "--prompt", "And God said", "--max-tokens", "20"];
        var plain = ServingProcess.Run(args);
        var json = JsonNode.Parse(ServingProcess.Run([.. args, "--json"]).Stdout)!;

        Assert.Equal(0, plain.ExitCode);
        Assert.Equal(json["text"]!.GetValue<string>() + "\n", plain.Stdout);
        Assert.NotEqual("", plain.Stdout.Trim());
        Assert.Contains("prompt tokens", plain.Stderr);
        Assert.Contains("tokens/s", plain.Stderr);
    }

    [Theory]
    [InlineData("--prompt", "x")]
    [InlineData("--model", "MODEL")]
    [InlineData("--model", "MODEL", "--prompt", "x", "--max-tokens", "0")]
    [InlineData("--model", "MODEL", "--prompt", "x", "--max-tokens", "many")]
    [InlineData("--model", "MODEL", "--prompt", "x", "--temperature", "-1")]
    [InlineData("--model", "MODEL", "--prompt", "x", "--max-tokens", "2048")]
    [InlineData("--model", "/no/such/folder", "--prompt", "x")]
    [InlineData("--model", "MODEL", "--prompt", "x", "--unknown")]
    public void BadArgumentsExitWithTwoAndAMessage(params string[] args)
    {
        var result = ServingProcess.Run(["generate", .. args.Select(a => a == "MODEL" ? _model : a)]);
        Assert.Equal(2, result.ExitCode);
        Assert.StartsWith("error:", result.Stderr);
        Assert.Equal("", result.Stdout);
    }

    [Fact]
    public void AFolderThatIsNotAModelIsNamedInTheError()
    {
        string path = Path.Combine(_model, "config.json");
        File.WriteAllText(path, "{\"model_type\": \"bert\"}");
        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "x");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(path, result.Stderr);
        Assert.Contains("model_type 'bert'", result.Stderr);
    }

    [Fact]
    public void AMissingTokenizerIsNamedInTheError()
    {
        string path = Path.Combine(_model, "tokenizer.model");
        File.Delete(path);
        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "x");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains(path, result.Stderr);
    }

    [Fact]
    public void AnEmptyPromptWithoutBosIsAUsageError()
    {
        string path = Path.Combine(_model, "tokenizer_config.json");
        var config = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        config["add_bos_token"] = false;
        File.WriteAllText(path, config.ToJsonString());
        var result = ServingProcess.Run("generate", "--model", _model, "--prompt", "");
        Assert.Equal(2, result.ExitCode);
        Assert.Contains("nothing to continue", result.Stderr);
    }

    public void Dispose() => _temp.Dispose();
}
