using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Debiasing;

namespace Serving.Server.Retrieval;

/// <summary>One concept: its groups, each given by text prompts (the group direction is the normalised mean of their embeddings).</summary>
public sealed record ConceptSettings(string Name, IReadOnlyList<IReadOnlyList<string>> Groups);

/// <summary>
/// A collection's <c>debias</c> setting, as sent and stored:
/// <c>{"method": "wring"|"projection", "concepts": [{"name": "gender", "groups": [["a photo of a man"], ["a photo of a woman"]]}]}</c>.
/// Stored image vectors are kept raw; the index holds them transformed, and queries with
/// <c>debias</c> (the default for such a collection) are transformed the same way.
/// </summary>
public sealed record DebiasSettings(DebiasMethod Method, IReadOnlyList<ConceptSettings> Concepts)
{
    private const int MaxPrompts = 64;

    public static DebiasSettings Parse(JsonNode? node, string param = "debias")
    {
        if (node is not JsonObject json)
        {
            throw ApiException.Invalid(param, "debias must be an object: {\"method\": \"wring\", \"concepts\": [{\"name\": ..., \"groups\": [[prompts], [prompts]]}]}");
        }

        DebiasMethod method = json["method"]?.GetValueKind() switch
        {
            null => DebiasMethod.Wring,
            JsonValueKind.String when json["method"]!.GetValue<string>() == "wring" => DebiasMethod.Wring,
            JsonValueKind.String when json["method"]!.GetValue<string>() == "projection" => DebiasMethod.Projection,
            _ => throw ApiException.Invalid($"{param}.method", "method must be \"wring\" or \"projection\""),
        };
        if (json["concepts"] is not JsonArray concepts || concepts.Count == 0)
        {
            throw ApiException.Invalid($"{param}.concepts", "concepts must be a non-empty array");
        }

        return new DebiasSettings(method, [.. concepts.Select((c, i) => ParseConcept(c, $"{param}.concepts[{i}]"))]);
    }

    private static ConceptSettings ParseConcept(JsonNode? node, string param)
    {
        if (node is not JsonObject concept || concept["groups"] is not JsonArray groups || groups.Count < 2)
        {
            throw ApiException.Invalid(param, "a concept needs \"groups\": at least two arrays of text prompts");
        }

        var parsed = new List<IReadOnlyList<string>>();
        foreach (JsonNode? group in groups)
        {
            string[] prompts = group is JsonArray array && array.All(p => p?.GetValueKind() == JsonValueKind.String)
                ? [.. array.Select(p => p!.GetValue<string>())]
                : [];
            if (prompts.Length == 0 || prompts.Length > MaxPrompts || prompts.Any(string.IsNullOrWhiteSpace))
            {
                throw ApiException.Invalid($"{param}.groups", $"each group must be an array of 1 to {MaxPrompts} non-empty prompts");
            }

            parsed.Add(prompts);
        }

        string name = concept["name"]?.GetValueKind() == JsonValueKind.String ? concept["name"]!.GetValue<string>() : $"concept{parsed.Count}";
        return new ConceptSettings(name, parsed);
    }

    public JsonObject ToJson() => new()
    {
        ["method"] = Method == DebiasMethod.Wring ? "wring" : "projection",
        ["concepts"] = new JsonArray([.. Concepts.Select(c => (JsonNode)new JsonObject
        {
            ["name"] = c.Name,
            ["groups"] = new JsonArray([.. c.Groups.Select(g => (JsonNode)new JsonArray([.. g.Select(p => (JsonNode)p)]))]),
        })]),
    };

    /// <summary>Embeds each group's prompts; the transform of the concepts in order.</summary>
    public DebiasTransform Build(Func<IReadOnlyList<string>, float[][]> embedTexts)
    {
        var subspaces = new List<ConceptSubspace>();
        foreach (ConceptSettings concept in Concepts)
        {
            var directions = concept.Groups.Select(group => Mean(embedTexts(group))).ToList();
            try
            {
                subspaces.Add(ConceptSubspace.Create(directions));
            }
            catch (ArgumentException e)
            {
                throw ApiException.Invalid("debias.concepts", $"concept '{concept.Name}': {e.Message}");
            }
        }

        return new DebiasTransform(Method, subspaces);
    }

    private static float[] Mean(float[][] vectors)
    {
        var mean = new float[vectors[0].Length];
        foreach (float[] vector in vectors)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(mean, vector, mean);
        }

        return mean;
    }
}
