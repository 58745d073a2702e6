using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models.Gemma3;

public class Gemma3ConfigTests
{
    private static JsonObject Json(Gemma3Config config) => config.ToJson();

    [Fact]
    public void ConfigJsonRoundTrips()
    {
        Gemma3Config read = Gemma3Config.FromJson(Json(Gemma3Presets.Gemma3_270M));
        Assert.Equal(Gemma3Presets.Gemma3_270M with { LayerTypes = read.LayerTypes }, read);
        Assert.Equal(Enumerable.Range(0, 18).Select(Gemma3Presets.Gemma3_270M.LayerKind), Enumerable.Range(0, 18).Select(read.LayerKind));
        Assert.Equal(268_098_176, read.ParameterCount);
        Assert.Equal(999_885_952, Gemma3Presets.Gemma3_1B.ParameterCount);
    }

    [Fact]
    public void HuggingFaceFieldNamesAreWritten()
    {
        JsonObject json = Json(Gemma3Presets.Tiny);
        Assert.Equal("gemma3_text", json["model_type"]!.GetValue<string>());
        Assert.Equal("Gemma3ForCausalLM", json["architectures"]![0]!.GetValue<string>());
        Assert.Equal(10_000.0, json["rope_local_base_freq"]!.GetValue<double>());
        Assert.Equal(["sliding_attention", "full_attention", "sliding_attention", "full_attention"],
            json["layer_types"]!.AsArray().Select(n => n!.GetValue<string>()));
    }

    [Fact]
    public void ExplicitLayerTypesWinOverThePattern()
    {
        JsonObject json = Json(Gemma3Presets.Tiny);
        json.Remove("sliding_window_pattern");
        json["layer_types"] = new JsonArray("full_attention", "sliding_attention", "sliding_attention", "full_attention");
        Gemma3Config config = Gemma3Config.FromJson(json);
        Assert.Equal([AttentionKind.Full, AttentionKind.Sliding, AttentionKind.Sliding, AttentionKind.Full],
            Enumerable.Range(0, 4).Select(config.LayerKind));
        Assert.Equal(config.RopeTheta, config.RopeBase(0));
        Assert.Equal(config.RopeLocalBaseFreq, config.RopeBase(1));
    }

    [Fact]
    public void NewerTransformersPatternFieldIsRead()
    {
        JsonObject json = Json(Gemma3Presets.Tiny);
        json.Remove("sliding_window_pattern");
        json.Remove("layer_types");
        json["_sliding_window_pattern"] = 4;
        Assert.Equal(AttentionKind.Full, Gemma3Config.FromJson(json).LayerKind(3));
        Assert.Equal(AttentionKind.Sliding, Gemma3Config.FromJson(json).LayerKind(1));
    }

    [Theory]
    [InlineData("[\"full_attention\"]", "has 1 entries for 4 layers")]
    [InlineData("[\"full_attention\", \"conv\", \"full_attention\", \"full_attention\"]", "entry 1 is 'conv'")]
    [InlineData("\"full_attention\"", "must be a list")]
    public void BadLayerTypesAreNamed(string layerTypes, string expected)
    {
        JsonObject json = Json(Gemma3Presets.Tiny);
        json["layer_types"] = JsonNode.Parse(layerTypes);
        var error = Assert.Throws<ArgumentException>(() => Gemma3Config.FromJson(json));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("num_key_value_heads", 3, "must divide num_attention_heads")]
    [InlineData("head_dim", 15, "even")]
    [InlineData("sliding_window", 1, "at least 2")]
    [InlineData("vocab_size", 0, "positive")]
    public void InconsistentShapesAreNamed(string field, int value, string expected)
    {
        JsonObject json = Json(Gemma3Presets.Tiny);
        json[field] = value;
        var error = Assert.Throws<ArgumentException>(() => Gemma3Config.FromJson(json));
        Assert.Contains(field, error.Message);
        Assert.Contains(expected, error.Message);
    }
}
