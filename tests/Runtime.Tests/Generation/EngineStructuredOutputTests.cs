using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Generation.Structured;
using Serving.Runtime.Models;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation;

/// <summary>
/// Constrained decoding through the engine, on models that know nothing of JSON (the random
/// tiny preset, and kjv-gemma3, which has only read the Bible): 50 seeds per schema, sampled at
/// temperature 1, and every output that finished parses and validates with JsonSchema.Net.
/// </summary>
public sealed class EngineStructuredOutputTests(TinyModelFixture tiny) : IClassFixture<TinyModelFixture>
{
    private static readonly string KjvFolder = Path.Combine(
        typeof(EngineStructuredOutputTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "models", "kjv-gemma3");

    public static readonly TheoryData<string, string> Cases = new()
    {
        { "tiny", """{"type":"object","properties":{"name":{"type":"string","maxLength":12},"age":{"type":"integer"},"admin":{"type":"boolean"}},"required":["name","age","admin"],"additionalProperties":false}""" },
        { "tiny", """{"$defs":{"leaf":{"enum":["a","b",1,null]}},"type":"object","properties":{"items":{"type":"array","items":{"$ref":"#/$defs/leaf"},"minItems":1,"maxItems":4},"flag":{"anyOf":[{"type":"boolean"},{"type":"null"}]}},"required":["items","flag"],"additionalProperties":false}""" },
        { "kjv", """{"type":"object","properties":{"verse":{"type":"string","minLength":3,"maxLength":40},"chapter":{"type":"integer"},"book":{"enum":["Genesis","Exodus","Psalms"]}},"required":["verse","chapter","book"],"additionalProperties":false}""" },
        { "kjv", """{"type":"object","properties":{"words":{"type":"array","items":{"type":"string","maxLength":10},"maxItems":3},"nested":{"type":"object","properties":{"ok":{"type":"boolean"}},"required":["ok"],"additionalProperties":false}},"required":["words","nested"],"additionalProperties":false}""" },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task EveryFinishedOutputValidatesAgainstItsSchema(string model, string schemaJson)
    {
        using DecoderModel? kjv = model == "kjv" ? DecoderModel.Load(KjvFolder, new DecoderLoadOptions { PagedAttention = true }) : null;
        using var engine = new Engine(kjv ?? tiny.PagedModel, new EngineOptions());
        SchemaNode schema = JsonSchemaCompiler.Compile(JsonNode.Parse(schemaJson));
        JsonSchema validator = JsonSchema.FromText(schemaJson);
        int[] prompt = [.. (kjv ?? tiny.PagedModel).Tokenizer.Encode("And God said")];
        int stopped = 0;
        for (int batch = 0; batch < 5; batch++)
        {
            var streams = Enumerable.Range(batch * 10, 10).Select(seed => engine.TrySubmit([new GenerationRequest
            {
                PromptIds = prompt,
                MaxTokens = 160,
                Sampling = new SamplingParams { Temperature = 1.0, Seed = seed },
                ResponseSchema = schema,
            }])![0]).ToList();
            foreach (var result in await Task.WhenAll(streams.Select(EngineReader.ReadAll)))
            {
                if (result.Finish != FinishReason.Stop)
                {
                    Assert.Equal(FinishReason.Length, result.Finish);
                    continue;
                }

                stopped++;
                using JsonDocument document = JsonDocument.Parse(result.Text);
                Assert.True(validator.Evaluate(document.RootElement).IsValid, result.Text);
            }
        }

        Assert.True(stopped >= 10, $"only {stopped} of 50 outputs finished within 160 tokens");
    }

    [Fact]
    public async Task ACutOffOutputEndsWithLengthAndGreedyStillFollowsTheSchema()
    {
        using var engine = new Engine(tiny.PagedModel, new EngineOptions());
        SchemaNode schema = JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"object","properties":{"a":{"type":"array","items":{"type":"integer"},"minItems":30}},"required":["a"],"additionalProperties":false}"""));
        var result = await EngineReader.ReadAll(engine.TrySubmit([new GenerationRequest { PromptIds = [2, 5, 9], MaxTokens = 6, ResponseSchema = schema }])![0]);
        Assert.Equal(FinishReason.Length, result.Finish);
        Assert.StartsWith("{\"a\":[", result.Text);
    }
}
