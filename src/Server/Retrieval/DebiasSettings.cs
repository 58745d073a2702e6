using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Debiasing;
using Serving.Server.Http;

namespace Serving.Server.Retrieval;

/// <summary>
/// One group of a concept. Its direction is the normalised mean of: the embeddings of its
/// <see cref="Prompts"/>; or of its reference <see cref="Images"/>; or, with
/// <see cref="NearestImages"/> = k, of the k images of <see cref="ReferenceCollection"/>
/// nearest to the prompts (REFERENCE §2: image-derived directions worked better).
/// </summary>
public sealed record GroupSettings(IReadOnlyList<string> Prompts, IReadOnlyList<byte[]> Images, int NearestImages, string? ReferenceCollection);

public sealed record ConceptSettings(string Name, IReadOnlyList<GroupSettings> Groups);

/// <summary>How a group's direction is computed, supplied by the service: text, image and nearest-image embeddings.</summary>
public interface IGroupEmbedder
{
    float[][] Texts(IReadOnlyList<string> texts);

    float[][] Images(IReadOnlyList<byte[]> images, string param);

    float[][] Nearest(string collection, float[] query, int k, string param);
}

/// <summary>
/// A collection's <c>debias</c> setting (<see cref="DebiasRequest"/>): <c>{"method": "wring"|"projection", "concepts": [{"name",
/// "groups": [group, …]}]}</c>, a group being an array of prompts, <c>{"images": [base64…]}</c> or
/// <c>{"prompts": […], "nearest_images": 100, "reference_collection": "name"}</c>. The group
/// directions are computed once, at creation, and stored with the collection: a restart, or
/// a later change to the reference collection, does not move them.
/// </summary>
public static class DebiasSettings
{
    private const int MaxPerGroup = 64;

    /// <summary>Checks the request, computes the directions and returns the JSON to store and the transform.</summary>
    public static (JsonObject Stored, DebiasTransform Transform) Create(DebiasRequest request, IGroupEmbedder embedder)
    {
        if (request.Concepts is not { Count: > 0 } concepts)
        {
            throw ApiException.Invalid("debias", "debias must be {\"method\": \"wring\"|\"projection\", \"concepts\": [{\"name\": ..., \"groups\": [[prompts], [prompts]]}]}");
        }

        DebiasMethod method = ParseMethod(request.Method);
        var stored = new JsonArray();
        foreach (var (concept, i) in concepts.Select((c, i) => (ParseConcept(c, $"debias.concepts[{i}]"), i)))
        {
            var directions = concept.Groups.Select((g, j) => Direction(g, embedder, $"debias.concepts[{i}].groups[{j}]")).ToArray();
            stored.Add(new JsonObject
            {
                ["name"] = concept.Name,
                ["groups"] = new JsonArray([.. concept.Groups.Select(Describe)]),
                ["directions"] = new JsonArray([.. directions.Select(d => (JsonNode)new JsonArray([.. d.Select(v => (JsonNode)v)]))]),
            });
        }

        var result = new JsonObject { ["method"] = MethodName(method), ["concepts"] = stored };
        return (result, Load(result));
    }

    /// <summary>The transform of stored settings (what <see cref="Create"/> returned).</summary>
    public static DebiasTransform Load(JsonObject stored)
    {
        var subspaces = stored["concepts"]!.AsArray().Select(concept =>
        {
            float[][] directions = [.. concept!["directions"]!.AsArray().Select(d => d!.AsArray().Select(v => v!.GetValue<float>()).ToArray())];
            try
            {
                return ConceptSubspace.Create(directions);
            }
            catch (ArgumentException e)
            {
                throw ApiException.Invalid("debias.concepts", $"concept '{concept["name"]}': {e.Message}");
            }
        }).ToList();
        return new DebiasTransform(ParseMethod(stored["method"]!.GetValue<string>()), subspaces);
    }

    /// <summary>The stored settings without the directions: what the API shows.</summary>
    public static JsonObject Public(JsonObject stored) => new()
    {
        ["method"] = stored["method"]!.DeepClone(),
        ["concepts"] = new JsonArray([.. stored["concepts"]!.AsArray().Select(c => (JsonNode)new JsonObject
        {
            ["name"] = c!["name"]!.DeepClone(),
            ["groups"] = c["groups"]!.DeepClone(),
        })]),
    };

    private static DebiasMethod ParseMethod(string? method) => method switch
    {
        null or "wring" => DebiasMethod.Wring,
        "projection" => DebiasMethod.Projection,
        _ => throw ApiException.Invalid("debias.method", "method must be \"wring\" or \"projection\""),
    };

    private static string MethodName(DebiasMethod method) => method == DebiasMethod.Wring ? "wring" : "projection";

    private static ConceptSettings ParseConcept(ConceptRequest? concept, string param)
    {
        if (concept?.Groups is not { Count: >= 2 } groups)
        {
            throw ApiException.Invalid(param, "a concept needs \"groups\": at least two groups");
        }

        return new ConceptSettings(concept.Name ?? param, [.. groups.Select((g, j) => ParseGroup(g, $"{param}.groups[{j}]"))]);
    }

    /// <summary>A group is a union: an array of prompts, or an object read as a <see cref="GroupRequest"/>.</summary>
    private static GroupSettings ParseGroup(JsonElement node, string param)
    {
        var group = node.ValueKind switch
        {
            JsonValueKind.Array => new GroupSettings(Strings(Read(node, RetrievalJson.Default.ListString, param), param), [], 0, null),
            JsonValueKind.Object => ParseGroup(Read(node, RetrievalJson.Default.GroupRequest, param), param),
            _ => null,
        };
        if (group is null)
        {
            throw ApiException.Invalid(param, "a group is an array of prompts, {\"images\": [...]} or {\"prompts\": [...], \"nearest_images\": k, \"reference_collection\": name}");
        }

        return group.ReferenceCollection is not null && group.NearestImages is < 1 or > 10_000
            ? throw ApiException.Invalid(param + ".nearest_images", "nearest_images must be between 1 and 10000")
            : group;
    }

    private static GroupSettings? ParseGroup(GroupRequest group, string param) => group switch
    {
        { Images: { } images } => new GroupSettings([], [.. Strings(images, param + ".images").Select(i => ImageInput.DecodeBase64(i, param + ".images"))], 0, null),
        { Prompts: { } prompts } => new GroupSettings(Strings(prompts, param + ".prompts"), [], group.NearestImages ?? 100,
            group.ReferenceCollection ?? throw ApiException.Invalid(param + ".reference_collection",
                "nearest_images needs reference_collection: the collection whose images define the group")),
        _ => null,
    };

    /// <summary>A group's value as <typeparamref name="T"/>; a value of the wrong type inside it is a 400 naming its path under <paramref name="param"/>.</summary>
    private static T Read<T>(JsonElement node, System.Text.Json.Serialization.Metadata.JsonTypeInfo<T> type, string param)
    {
        try
        {
            return node.Deserialize(type)!;
        }
        catch (JsonException e)
        {
            var (message, field, code) = OpenAiErrors.DescribeJson(e, under: param);
            throw new ApiException(StatusCodes.Status400BadRequest, message, field, code);
        }
    }

    private static string[] Strings(List<string> values, string param) =>
        values.Count is > 0 and <= MaxPerGroup && !values.Any(string.IsNullOrWhiteSpace)
            ? [.. values]
            : throw ApiException.Invalid(param, $"give 1 to {MaxPerGroup} non-empty strings");

    private static float[] Direction(GroupSettings group, IGroupEmbedder embedder, string param)
    {
        float[][] vectors = group.Images.Count > 0 ? embedder.Images(group.Images, param + ".images") : embedder.Texts(group.Prompts);
        float[] mean = Mean(vectors);
        if (group.NearestImages > 0)
        {
            mean = Mean(embedder.Nearest(group.ReferenceCollection!, mean, group.NearestImages, param + ".reference_collection"));
        }

        return mean;
    }

    private static JsonNode Describe(GroupSettings group) => group switch
    {
        { Images.Count: > 0 } => new JsonObject { ["images"] = group.Images.Count },
        { NearestImages: > 0 } => new JsonObject
        {
            ["prompts"] = new JsonArray([.. group.Prompts.Select(p => (JsonNode)p)]),
            ["nearest_images"] = group.NearestImages,
            ["reference_collection"] = group.ReferenceCollection,
        },
        _ => new JsonArray([.. group.Prompts.Select(p => (JsonNode)p)]),
    };

    private static float[] Mean(float[][] vectors)
    {
        var mean = new float[vectors[0].Length];
        foreach (float[] vector in vectors)
        {
            System.Numerics.Tensors.TensorPrimitives.Add(mean, vector, mean);
        }

        float norm = System.Numerics.Tensors.TensorPrimitives.Norm<float>(mean);
        return norm > 0 ? [.. mean.Select(v => v / norm)] : mean;
    }
}
