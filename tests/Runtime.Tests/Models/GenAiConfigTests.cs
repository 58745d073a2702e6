using System.Text.Json.Nodes;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>
/// The genai_config.json we write, field by field against what GenAI's model builder writes
/// (make_genai_config); tests/Compat.Tests runs GenAI 0.20 on it.
/// </summary>
public sealed class GenAiConfigTests
{
    private static readonly Gemma3Config Tiny = Gemma3Presets.Tiny;

    private static readonly GenAiDecoderLayout Serving = new("onnx/model.onnx", HasPositionIds: true, HasNumLogitsToKeep: true, PastPresentShareBuffer: false)
    {
        SlidingPresentLength = Tiny.SlidingWindow - 1,
    };

    private static JsonObject Build(GenAiDecoderLayout layout) => GenAiConfig.Build(Tiny, Gemma3ModelWriter.Generation(Tiny), layout);

    [Fact]
    public void TheModelSectionHasTheShapesTypeAndIdsOfTheFolder()
    {
        JsonNode model = Build(Serving)["model"]!;
        JsonNode decoder = model["decoder"]!;
        Assert.Equal("gemma3_text", model["type"]!.GetValue<string>());
        Assert.Equal(Tiny.MaxPositionEmbeddings, model["context_length"]!.GetValue<int>());
        Assert.Equal(Tiny.VocabSize, model["vocab_size"]!.GetValue<int>());
        Assert.Equal([1, 6], model["eos_token_id"]!.AsArray().Select(id => id!.GetValue<int>()));
        Assert.Equal((2, 0), (model["bos_token_id"]!.GetValue<int>(), model["pad_token_id"]!.GetValue<int>()));
        Assert.Equal((16, 64, 4, 4, 2), (decoder["head_size"]!.GetValue<int>(), decoder["hidden_size"]!.GetValue<int>(),
            decoder["num_attention_heads"]!.GetValue<int>(), decoder["num_hidden_layers"]!.GetValue<int>(), decoder["num_key_value_heads"]!.GetValue<int>()));
        Assert.Equal("past_key_values.%d.value", decoder["inputs"]!["past_value_names"]!.GetValue<string>());
        Assert.Equal("present.%d.key", decoder["outputs"]!["present_key_names"]!.GetValue<string>());
        Assert.Equal("position_ids", decoder["inputs"]!["position_ids"]!.GetValue<string>());
    }

    [Fact]
    public void SlidingLayersAreSizedToTheSlotsOurGraphReturns()
    {
        JsonNode window = Build(Serving)["model"]!["decoder"]!["sliding_window"]!;
        // window_size + cache_slack = 15 = sliding_window − 1; tiny's layers 0 and 2 are the sliding ones.
        Assert.Equal((14, 1), (window["window_size"]!.GetValue<int>(), window["cache_slack"]!.GetValue<int>()));
        Assert.Equal([0, 2], window["layers"]!.AsArray().Select(layer => layer!.GetValue<int>()));
        Assert.False(window["slide_key_value_cache"]!.GetValue<bool>());
        Assert.False(window["slide_inputs"]!.GetValue<bool>());
    }

    [Fact]
    public void ASlidingPresentOfOneSlotIsRefused() =>
        // window_size would be 0, and GenAI drops a block whose window_size is not positive.
        Assert.Throws<ArgumentOutOfRangeException>(() => Build(Serving with { SlidingPresentLength = 1 }));

    [Fact]
    public void SearchDefaultsComeFromGenerationConfig()
    {
        JsonNode search = Build(Serving)["search"]!;
        Assert.True(search["do_sample"]!.GetValue<bool>());
        Assert.Equal(64, search["top_k"]!.GetValue<int>());
        Assert.Equal(0.95, search["top_p"]!.GetValue<double>());
        Assert.Equal(Tiny.MaxPositionEmbeddings, search["max_length"]!.GetValue<int>());
        Assert.False(search["past_present_share_buffer"]!.GetValue<bool>());
    }

    [Fact]
    public void ALayoutWithoutPositionsOrTrimmedCachesWritesNeither()
    {
        var layout = new GenAiDecoderLayout("model.onnx", HasPositionIds: false, HasNumLogitsToKeep: false, PastPresentShareBuffer: true);
        JsonObject genai = Build(layout);
        JsonObject decoder = genai["model"]!["decoder"]!.AsObject();
        Assert.False(decoder["inputs"]!.AsObject().ContainsKey("position_ids"));
        Assert.False(decoder.ContainsKey("sliding_window"));
        Assert.True(genai["search"]!["past_present_share_buffer"]!.GetValue<bool>());
        Assert.Equal("model.onnx", decoder["filename"]!.GetValue<string>());
    }

    [Fact]
    public void GenerationDefaultsReadTheSamplingFieldsBack()
    {
        using var folder = new TempFolder();
        Gemma3ModelWriter.WriteRandom(folder.Path, Tiny, seed: 1);
        GenerationDefaults read = GenerationDefaults.Read(folder.Path, Tiny);
        GenerationDefaults written = Gemma3ModelWriter.Generation(Tiny);
        Assert.Equal((written.DoSample, written.TopK, written.TopP, written.Temperature), (read.DoSample, read.TopK, read.TopP, read.Temperature));
        Assert.Equal(written.EosTokenIds, read.EosTokenIds);
    }
}
