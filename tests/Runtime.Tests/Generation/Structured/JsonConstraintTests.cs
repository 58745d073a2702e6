using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;
using Serving.Runtime.Generation.Structured;

namespace Serving.Runtime.Tests.Generation.Structured;

/// <summary>
/// The schema automaton and its token masks, checked against an independent validator
/// (JsonSchema.Net): random walks over a vocabulary, choosing only allowed tokens, always end in
/// a value that parses and validates.
/// </summary>
public sealed class JsonConstraintTests
{
    private const string Person = """{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"},"admin":{"type":"boolean"}},"required":["name","age","admin"],"additionalProperties":false}""";

    public static readonly TheoryData<string> Schemas =
    [
        Person,
        """{"type":"object","properties":{"color":{"enum":["red","green","blue",null,12]},"tags":{"type":"array","items":{"type":"string","maxLength":5},"minItems":1,"maxItems":3}},"required":["color","tags"],"additionalProperties":false}""",
        """{"type":"object","properties":{"value":{"anyOf":[{"type":"number"},{"type":"object","properties":{"x":{"type":"null"}},"required":["x"],"additionalProperties":false},{"const":"none"}]},"note":{"type":"string"}},"required":["value"],"additionalProperties":false}""",
        """{"$defs":{"node":{"type":"object","properties":{"label":{"type":"string","minLength":1},"children":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["label","children"],"additionalProperties":false}},"$ref":"#/$defs/node"}""",
        """{"type":"array","items":{"type":["integer","null"]},"minItems":2,"maxItems":4}""",
        """{"type":"object"}""",
        """{"type":"number"}""",
    ];

    /// <summary>A vocabulary like a real one: single bytes, JSON punctuation runs, words with quotes and spaces, UTF-8.</summary>
    private static byte[]?[] Vocabulary()
    {
        var tokens = new List<byte[]?> { null, null }; // ids 0, 1: special (EOS is 1)
        for (int b = 0; b < 256; b++)
        {
            tokens.Add([(byte)b]);
        }

        string[] pieces = ["{\"", "\":", "\",\"", "\"}", "},", "[\"", "\"]", "null", "true", "false", "12", "3.5", "-", "e+", "name", " the",
            "\",", ":\"", "\\n", "\\\"", "é", "日本", "red", "green", "blue", "none", "label", "children", "value", "}]", "],", "{\"x\":null}", "age", "0", "00", "1e"];
        tokens.AddRange(pieces.Select(Encoding.UTF8.GetBytes));
        return [.. tokens];
    }

    private static string RandomWalk(TokenMasks masks, SchemaNode schema, byte[]?[] vocabulary, int seed, int maxTokens)
    {
        var random = new Random(seed);
        var constraint = new JsonConstraint(masks, schema, id => vocabulary[id]);
        var output = new List<byte>();
        for (int step = 0; step < maxTokens; step++)
        {
            ulong[] allowed = constraint.Allowed()!;
            var ids = Enumerable.Range(0, vocabulary.Length).Where(id => TokenMasks.IsAllowed(allowed, id)).ToList();
            Assert.NotEmpty(ids);
            // Lean towards closing as the walk goes on, as a model's EOS would.
            int id = TokenMasks.IsAllowed(allowed, 1) && random.NextDouble() < step / (double)maxTokens ? 1
                : ids[random.Next(ids.Count)];
            if (id == 1)
            {
                Assert.True(constraint.IsComplete);
                return Encoding.UTF8.GetString([.. output]);
            }

            constraint.Accept(id);
            output.AddRange(vocabulary[id]!);
        }

        return Encoding.UTF8.GetString([.. output]);
    }

    [Theory]
    [MemberData(nameof(Schemas))]
    public void EveryCompletedRandomWalkValidatesAgainstItsSchema(string schemaJson)
    {
        byte[]?[] vocabulary = Vocabulary();
        var masks = new TokenMasks(vocabulary, [1]);
        SchemaNode schema = JsonSchemaCompiler.Compile(JsonNode.Parse(schemaJson));
        JsonSchema validator = JsonSchema.FromText(schemaJson);
        int completed = 0;
        for (int seed = 0; seed < 50; seed++)
        {
            string text = RandomWalk(masks, schema, vocabulary, seed, 400);
            if (!JsonStates.Accepts(schema, text))
            {
                continue; // cut off by the token limit, as finish_reason "length" would be
            }

            completed++;
            using JsonDocument document = JsonDocument.Parse(text);
            EvaluationResults result = validator.Evaluate(document.RootElement);
            Assert.True(result.IsValid, $"seed {seed}: {text}");
        }

        Assert.True(completed >= 25, $"only {completed} of 50 walks completed");
    }

    [Theory]
    [InlineData("""{"name":"Ann","age":-3,"admin":false}""", true)]
    [InlineData("""{"name":"Ann","age":3.5,"admin":false}""", false)]
    [InlineData("""{"age":3,"name":"Ann","admin":false}""", false)] // schema order
    [InlineData("""{"name":"Ann","age":3}""", false)]               // a required property missing
    [InlineData("""{"name":"Ann","age":03,"admin":true}""", false)]
    [InlineData("""{"name":"A\"n\n","age":0,"admin":true}""", true)]
    [InlineData("""{"name":"Ann", "age":0,"admin":true}""", false)] // compact: no whitespace
    public void TheAutomatonAcceptsExactlyTheSchemasCompactValues(string text, bool accepted)
    {
        SchemaNode schema = JsonSchemaCompiler.Compile(JsonNode.Parse(Person));
        Assert.Equal(accepted, JsonStates.Accepts(schema, text));
    }

    [Fact]
    public void EndOfSequenceOnlyOnceTheValueIsComplete()
    {
        byte[]?[] vocabulary = Vocabulary();
        var masks = new TokenMasks(vocabulary, [1]);
        var constraint = new JsonConstraint(masks, JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"integer"}""")), id => vocabulary[id]);
        Assert.False(TokenMasks.IsAllowed(constraint.Allowed()!, 1));
        constraint.Accept(2 + '4');
        Assert.True(TokenMasks.IsAllowed(constraint.Allowed()!, 1));  // "4" may end…
        Assert.True(TokenMasks.IsAllowed(constraint.Allowed()!, 2 + '2'));  // …or go on
        Assert.False(TokenMasks.IsAllowed(constraint.Allowed()!, 2 + '.'));
        Assert.False(TokenMasks.IsAllowed(constraint.Allowed()!, 0)); // a special token never
    }

    [Fact]
    public void InsideAStringPlainTextComesFromThePrecomputedMask()
    {
        byte[]?[] vocabulary = Vocabulary();
        var masks = new TokenMasks(vocabulary, [1]);
        var constraint = new JsonConstraint(masks, JsonSchemaCompiler.Compile(JsonNode.Parse("""{"type":"string"}""")), id => vocabulary[id]);
        constraint.Accept(2 + '"');
        ulong[] inside = constraint.Allowed()!;
        int id(string piece) => Array.FindIndex(vocabulary, bytes => bytes is not null && bytes.SequenceEqual(Encoding.UTF8.GetBytes(piece)));
        Assert.True(TokenMasks.IsAllowed(inside, id(" the")));
        Assert.True(TokenMasks.IsAllowed(inside, id("日本")));
        Assert.True(TokenMasks.IsAllowed(inside, id("\\n")));
        Assert.True(TokenMasks.IsAllowed(inside, id("\"}")) is false);  // closes the string, then '}' has no object
        Assert.True(TokenMasks.IsAllowed(inside, 2 + '"'));
        Assert.False(TokenMasks.IsAllowed(inside, 2 + 0x0A));  // a raw newline
        Assert.False(TokenMasks.IsAllowed(inside, 2 + 0x80));  // a lone continuation byte
        Assert.True(TokenMasks.IsAllowed(inside, 2 + 0xC3));   // a lead byte; its continuation follows
        Assert.Same(inside, constraint.Allowed());             // cached per state
    }

    [Theory]
    [InlineData("""{"type":"string","pattern":"^a"}""", "pattern")]
    [InlineData("""{"type":"integer","minimum":3}""", "minimum")]
    [InlineData("""{"allOf":[{"type":"string"}]}""", "allOf")]
    [InlineData("""{"type":"object","properties":{"a":{"type":"string"}},"required":["b"]}""", "required")]
    [InlineData("""{"$ref":"#/$defs/missing"}""", "$ref")]
    [InlineData("""{"type":"strings"}""", "type")]
    [InlineData("""{"type":"object","additionalProperties":{"type":"string"}}""", "additionalProperties")]
    public void UnsupportedSchemasAreRefusedNamingTheKeyword(string schemaJson, string keyword)
    {
        var error = Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaCompiler.Compile(JsonNode.Parse(schemaJson)));
        Assert.Equal(keyword, error.Keyword);
    }

    [Fact]
    public void HugeEnumsAndDeepNestingAreRefused()
    {
        var values = new JsonArray([.. Enumerable.Range(0, 1_000_000).Select(i => (JsonNode?)JsonValue.Create(i))]);
        var huge = new JsonObject { ["enum"] = values };
        Assert.Equal("enum", Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaCompiler.Compile(huge)).Keyword);

        JsonNode deep = new JsonObject { ["type"] = "string" };
        for (int i = 0; i < 40; i++)
        {
            deep = new JsonObject { ["type"] = "array", ["items"] = deep };
        }

        Assert.Contains("nested more than", Assert.Throws<UnsupportedSchemaException>(() => JsonSchemaCompiler.Compile(deep)).Message);
    }
}
