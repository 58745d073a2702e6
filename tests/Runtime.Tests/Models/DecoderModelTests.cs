using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

public class DecoderModelTests
{
    private static readonly Gemma3Config Tiny = Gemma3Presets.Tiny;

    private static TempFolder TinyFolder()
    {
        var folder = new TempFolder();
        Gemma3ModelWriter.WriteRandom(folder.Path, Tiny, seed: 3);
        return folder;
    }

    private static void EditConfig(TempFolder folder, Action<JsonObject> edit)
    {
        string path = folder.File("config.json");
        var json = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        edit(json);
        File.WriteAllText(path, json.ToJsonString());
    }

    [Fact]
    public void DiscoversTheSignatureOfOurGraph()
    {
        using var folder = TinyFolder();
        using var model = DecoderModel.Load(folder.Path);
        DecoderSignature signature = model.Signature;
        Assert.Equal(("input_ids", "attention_mask", "position_ids"), (signature.InputIds, signature.AttentionMask, signature.PositionIds));
        Assert.Equal("num_logits_to_keep", signature.NumLogitsToKeep);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float, signature.KvType);
        Assert.Equal(Tiny.NumHiddenLayers, signature.Layers.Count);
        Assert.All(signature.Layers, layer =>
        {
            Assert.Equal(Tiny.LayerKind(layer.Index), layer.Kind);
            Assert.Equal(layer.Kind == AttentionKind.Sliding, layer.HasOwnLength);
            Assert.Equal($"present.{layer.Index}.value", layer.PresentValue);
        });
        Assert.True(signature.SupportsKvCompression);
        Assert.Equal([1, 6], model.Generation.EosTokenIds);
    }

    [Fact]
    public void MissingFolderConfigOrOnnxFileNamesThePath()
    {
        Assert.Contains("not found", Assert.Throws<ModelLoadException>(() => DecoderModel.Load("/nonexistent/model")).Message);

        using var folder = TinyFolder();
        File.Delete(folder.File("onnx/model.onnx"));
        Assert.EndsWith(Path.Combine("onnx", "model.onnx"), Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);

        File.Delete(folder.File("config.json"));
        Assert.EndsWith("config.json", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);
    }

    [Fact]
    public void CorruptFilesAreNamed()
    {
        using var folder = TinyFolder();
        File.WriteAllText(folder.File("generation_config.json"), "{ not json");
        Assert.EndsWith("generation_config.json", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);

        File.Delete(folder.File("generation_config.json"));
        File.WriteAllBytes(folder.File("onnx/model.onnx"), [1, 2, 3, 4, 5, 6, 7, 8]);
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.EndsWith("model.onnx", error.FilePath);
        Assert.Contains("cannot load", error.Message);
    }

    [Fact]
    public void TruncatedWeightsAreNamed()
    {
        using var folder = TinyFolder();
        string data = folder.File("onnx/model.onnx_data");
        File.WriteAllBytes(data, File.ReadAllBytes(data)[..1000]);
        Assert.EndsWith("model.onnx", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);
    }

    [Fact]
    public void UnknownModelTypeIsRefused()
    {
        using var folder = TinyFolder();
        EditConfig(folder, json => json["model_type"] = "llama");
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains("model_type 'llama' is not supported", error.Message);
        Assert.EndsWith("config.json", error.FilePath);
    }

    [Theory]
    [InlineData("num_key_value_heads", 4, "KV heads")]
    [InlineData("head_dim", 32, "head size")]
    [InlineData("vocab_size", 2048, "vocab_size")]
    [InlineData("num_hidden_layers", 2, "more KV layers")]
    [InlineData("num_hidden_layers", 6, "past_key_values.4.key")]
    public void ShapesThatDisagreeWithConfigAreRefused(string field, int value, string expected)
    {
        using var folder = TinyFolder();
        // The graph's own checks: genai_config.json, which states the shapes too, would refuse first.
        File.Delete(folder.File("genai_config.json"));
        EditConfig(folder, json =>
        {
            json[field] = value;
            json.Remove("layer_types");
        });
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains(expected, error.Message);
    }

    [Theory]
    [InlineData("num_attention_heads", "\"four\"")]
    [InlineData("tie_word_embeddings", "\"yes\"")]
    [InlineData("hidden_activation", "3")]
    [InlineData("eos_token_id", "[null]")]
    [InlineData("rope_theta", "{}")]
    [InlineData("layer_types", "[1, 2, 3, 4]")]
    [InlineData("model_type", "7")]
    public void InvalidConfigValueIsNamed(string field, string json)
    {
        using var folder = TinyFolder();
        EditConfig(folder, config => config[field] = JsonNode.Parse(json));
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains(field, error.Message);
        Assert.EndsWith("config.json", error.FilePath);
    }

    [Fact]
    public void DuplicateKeysInConfigAreNamed()
    {
        using var folder = TinyFolder();
        File.WriteAllText(folder.File("config.json"), File.ReadAllText(folder.File("config.json")).Replace("{", "{\"vocab_size\": 5,", StringComparison.Ordinal));
        Assert.EndsWith("config.json", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);
    }

    [Fact]
    public void ATokenizerSmallerThanTheVocabularyIsRefused()
    {
        using var folder = TinyFolder();
        Serving.Runtime.Text.GemmaTokenizerWriter.Write(folder.Path, 800);
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains("800 pieces", error.Message);
        Assert.EndsWith("tokenizer.model", error.FilePath);
    }

    [Fact]
    public void AMissingTokenizerIsNamed()
    {
        using var folder = TinyFolder();
        File.Delete(folder.File("tokenizer.model"));
        Assert.EndsWith("tokenizer.model", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);
    }

    [Fact]
    public void LayerTypesThatDisagreeWithTheGraphAreRefused()
    {
        using var folder = TinyFolder();
        EditConfig(folder, json => json["layer_types"] = new JsonArray("full_attention", "full_attention", "sliding_attention", "full_attention"));
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains("layer 0's cache length (sliding_past_sequence_length) differs", error.Message);
    }

    [Fact]
    public void InvalidGenAiConfigIsNamed()
    {
        using var folder = TinyFolder();
        File.WriteAllText(folder.File("genai_config.json"), """{"model": {"decoder": {"filename": 12}}}""");
        Assert.EndsWith("genai_config.json", Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path)).FilePath);
    }

    [Fact]
    public void AFolderWeWriteNamesItsGraphInGenAiConfigAndLoads()
    {
        using var folder = TinyFolder();
        JsonObject genai = JsonNode.Parse(File.ReadAllText(folder.File("genai_config.json")))!.AsObject();
        Assert.Equal("onnx/model.onnx", genai["model"]!["decoder"]!["filename"]!.GetValue<string>());
        using var model = DecoderModel.Load(folder.Path);
        Assert.EndsWith(Path.Combine("onnx", "model.onnx"), model.OnnxPath);
    }

    [Theory]
    [InlineData("decoder", "num_hidden_layers", "num_hidden_layers")]
    [InlineData("decoder", "num_key_value_heads", "num_key_value_heads")]
    [InlineData("decoder", "num_attention_heads", "num_attention_heads")]
    [InlineData("decoder", "head_size", "head_dim")]
    [InlineData("decoder", "hidden_size", "hidden_size")]
    [InlineData(null, "vocab_size", "vocab_size")]
    public void AGenAiConfigThatDisagreesWithConfigJsonIsRefusedNamingTheField(string? section, string field, string configKey)
    {
        using var folder = TinyFolder();
        string path = folder.File("genai_config.json");
        JsonObject genai = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        JsonObject owner = section is null ? genai["model"]!.AsObject() : genai["model"]![section]!.AsObject();
        owner[field] = owner[field]!.GetValue<int>() + 1;
        File.WriteAllText(path, genai.ToJsonString());

        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Equal(path, error.FilePath);
        Assert.Contains($"{field} = ", error.Message);
        Assert.Contains($"config.json says {configKey} = ", error.Message);
    }

    [Theory]
    [InlineData("inputs", "past_key_names", "past.%d.k", "past.0.k")]
    [InlineData("inputs", "position_ids", "positions", "positions")]
    [InlineData("outputs", "logits", "scores", "scores")]
    public void AGenAiConfigNamingATensorTheGraphLacksIsRefusedNamingTheField(string section, string field, string pattern, string tensor)
    {
        using var folder = TinyFolder();
        string path = folder.File("genai_config.json");
        JsonObject genai = JsonNode.Parse(File.ReadAllText(path))!.AsObject();
        genai["model"]!["decoder"]![section]![field] = pattern;
        File.WriteAllText(path, genai.ToJsonString());

        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path, new DecoderLoadOptions { PagedAttention = true }));
        Assert.Equal(path, error.FilePath);
        Assert.Contains($"model.decoder.{section}.{field} '{pattern}' names '{tensor}', which the graph does not have", error.Message);
    }

    [Fact]
    public void AGenAiShapeFieldThatIsNotAnIntegerIsRefused()
    {
        using var folder = TinyFolder();
        File.WriteAllText(folder.File("genai_config.json"), """{"model": {"decoder": {"head_size": "sixteen"}}}""");
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.EndsWith("genai_config.json", error.FilePath);
        Assert.Contains("not an integer", error.Message);
    }

    [Fact]
    public void GraphWithoutMaskOrPositionsLoadsWithANoteAndRuns()
    {
        using var folder = TinyFolder();
        SyntheticDecoder.Write(folder.File("onnx/model.onnx"), Tiny, new(AttentionMask: false, PositionIds: false, NumLogitsToKeep: true));
        File.Delete(folder.File("genai_config.json")); // ours names attention_mask and position_ids, which this graph lacks
        var logger = new ListLogger();
        using var model = DecoderModel.Load(folder.Path, logger: logger);

        Assert.Null(model.Signature.AttentionMask);
        Assert.Null(model.Signature.PositionIds);
        Assert.Equal("num_logits_to_keep", model.Signature.NumLogitsToKeep);
        Assert.False(model.Signature.SupportsKvCompression);
        Assert.Contains(logger.Messages, m => m.Contains("KV-cache compression is unavailable", StringComparison.Ordinal));

        GenerationResult result = new Generator(model).Generate([2, 40, 41], new GenerateOptions(MaxTokens: 3, StopAtEos: false));
        Assert.Equal([42, 43, 44], result.TokenIds);
    }

    [Fact]
    public void AOneElementNumLogitsToKeepIsFedAsAVector()
    {
        using var folder = TinyFolder();
        SyntheticDecoder.Write(folder.File("onnx/model.onnx"), Tiny, new(NumLogitsToKeep: true, NumLogitsToKeepVector: true));
        using var model = DecoderModel.Load(folder.Path);
        Assert.True(model.Signature.NumLogitsToKeepIsVector);

        GenerationResult result = new Generator(model).Generate([2, 40, 41], new GenerateOptions(MaxTokens: 3, StopAtEos: false));
        Assert.Equal([42, 43, 44], result.TokenIds);
    }

    [Fact]
    public void OurGraphsNumLogitsToKeepIsFedAsAScalar()
    {
        using var folder = TinyFolder();
        using var model = DecoderModel.Load(folder.Path);
        Assert.False(model.Signature.NumLogitsToKeepIsVector);
        Assert.Empty(model.Session.InputMetadata["num_logits_to_keep"].Dimensions);
    }

    [Fact]
    public void Float16CachesAndLogitsAreSupported()
    {
        using var folder = TinyFolder();
        SyntheticDecoder.Write(folder.File("onnx/model.onnx"), Tiny, new(Float16: true));
        using var model = DecoderModel.Load(folder.Path);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, model.Signature.KvType);
        Assert.Equal(Microsoft.ML.OnnxRuntime.Tensors.TensorElementType.Float16, model.Signature.LogitsType);

        GenerationResult result = new Generator(model).Generate([2, 40, 41], new GenerateOptions(MaxTokens: 4, StopAtEos: false));
        Assert.Equal([42, 43, 44, 45], result.TokenIds);
    }

    [Fact]
    public void InputIdsOfAnotherTypeAreRefused()
    {
        // Gather takes int32 indices too, so ONNX Runtime loads this graph; the runner feeds int64.
        using var folder = TinyFolder();
        var model = Serving.Runtime.Onnx.OnnxModelFile.Load(folder.File("onnx/model.onnx"));
        model.Graph.Input.Single(i => i.Name == "input_ids").Type.TensorType.ElemType = (int)Serving.Runtime.Onnx.Proto.TensorProto.Types.DataType.Int32;
        Serving.Runtime.Onnx.OnnxModelFile.Save(model, folder.File("onnx/model.onnx"), long.MaxValue);
        var error = Assert.Throws<ModelLoadException>(() => DecoderModel.Load(folder.Path));
        Assert.Contains("input 'input_ids' has element type Int32", error.Message);
    }

    [Fact]
    public void GenAiConfigNamesTheFileAndTensors()
    {
        using var folder = TinyFolder();
        File.Delete(folder.File("onnx/model.onnx"));
        SyntheticDecoder.Write(folder.File("decoder.onnx"), Tiny, new(PastKey: "past_key_{0}", PastValue: "past_value_{0}", PresentKey: "present_key_{0}", PresentValue: "present_value_{0}"));
        File.WriteAllText(folder.File("genai_config.json"), """
            {"model": {"type": "gemma3_text", "decoder": {"filename": "decoder.onnx",
              "inputs": {"input_ids": "input_ids", "past_key_names": "past_key_%d", "past_value_names": "past_value_%d"},
              "outputs": {"logits": "logits", "present_key_names": "present_key_%d", "present_value_names": "present_value_%d"}}}}
            """);
        using var model = DecoderModel.Load(folder.Path);
        Assert.EndsWith("decoder.onnx", model.OnnxPath);
        Assert.Equal("past_key_3", model.Signature.Layers[3].PastKey);
        Assert.Equal("present_value_0", model.Signature.Layers[0].PresentValue);
    }

    private sealed class ListLogger : ILogger
    {
        public List<string> Messages { get; } = [];

        public IDisposable? BeginScope<TState>(TState state) where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            Messages.Add(formatter(state, exception));
    }
}
