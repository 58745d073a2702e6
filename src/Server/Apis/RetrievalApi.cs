using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Retrieval;
using Serving.Server.Retrieval;

namespace Serving.Server.Apis;

/// <summary>Image collections: create, list, upload (JSON or multipart), get, delete, search.</summary>
public static class RetrievalApi
{
    public static IEndpointRouteBuilder MapRetrievalApi(this IEndpointRouteBuilder app)
    {
        RouteGroupBuilder collections = app.MapGroup("/v1/collections").AddEndpointFilter<ApiExceptionFilter>();
        collections.MapPost("", Create);
        collections.MapGet("", (RetrievalService service) => TypedResults.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray([.. service.Collections.Select(c => (JsonNode)c.ToJson())]),
        }));
        collections.MapGet("{name}", (string name, RetrievalService service) => TypedResults.Json(service.Get(name).ToJson()));
        collections.MapDelete("{name}", Delete);
        collections.MapPost("{name}/items", Upload).DisableAntiforgery();
        collections.MapGet("{name}/items/{id}", GetItem);
        collections.MapDelete("{name}/items/{id}", DeleteItem);
        collections.MapPost("{name}/search", Search);
        return app;
    }

    private static async Task<IResult> Create(HttpRequest request, RetrievalService service, ClipEmbedder embedder)
    {
        JsonObject body = await RequestJson.ReadObjectAsync(request);
        string name = RequestJson.RequiredString(body, "name");
        string model = RequestJson.OptionalString(body, "model") ?? DefaultModel(embedder);
        CollectionState state = await service.CreateAsync(name, model, body["debias"]);
        return TypedResults.Json(state.ToJson(), statusCode: StatusCodes.Status201Created);
    }

    /// <summary>With one CLIP model served, <c>model</c> may be left out.</summary>
    private static string DefaultModel(ClipEmbedder embedder) =>
        embedder.ModelIds.Count() == 1 ? embedder.ModelIds.Single() : throw ApiException.Invalid("model", "model is required (the CLIP model that embeds the collection)");

    private static async Task<IResult> Delete(string name, RetrievalService service)
    {
        await service.DeleteAsync(name);
        return TypedResults.Json(new JsonObject { ["object"] = "collection.deleted", ["name"] = name, ["deleted"] = true });
    }

    private static async Task<IResult> Upload(string name, HttpRequest request, RetrievalService service)
    {
        service.Get(name);
        IReadOnlyList<NewItem> items = ItemUploads.IsMultipart(request)
            ? await ItemUploads.ReadMultipartAsync(request)
            : ItemUploads.ReadJson(await RequestJson.ReadObjectAsync(request), service.Options.MaxItemsPerRequest);
        IReadOnlyList<string> ids = await service.UpsertAsync(name, items);
        return TypedResults.Json(new JsonObject { ["object"] = "list", ["ids"] = new JsonArray([.. ids.Select(id => (JsonNode)id)]) });
    }

    private static IResult GetItem(string name, string id, bool? include_vector, RetrievalService service)
    {
        var (item, metadata) = service.GetItem(name, id);
        var json = new JsonObject { ["object"] = "collection.item", ["id"] = item.Id, ["metadata"] = metadata };
        if (include_vector == true)
        {
            json["embedding"] = new JsonArray([.. item.Vector.Select(v => (JsonNode)v)]);
        }

        return TypedResults.Json(json);
    }

    private static async Task<IResult> DeleteItem(string name, string id, RetrievalService service)
    {
        await service.DeleteItemAsync(name, id);
        return TypedResults.Json(new JsonObject { ["object"] = "collection.item.deleted", ["id"] = id, ["deleted"] = true });
    }

    private static async Task<IResult> Search(string name, HttpRequest request, RetrievalService service)
    {
        service.Get(name);
        JsonObject body = await RequestJson.ReadObjectAsync(request);
        string? image = RequestJson.OptionalString(body, "image");
        var query = new SearchQuery(
            RequestJson.OptionalString(body, "text"),
            image is null ? null : ImageInput.DecodeBase64(image, "image"),
            RequestJson.OptionalFloats(body, "vector"),
            RequestJson.OptionalInt(body, "top_k", 10),
            RequestJson.OptionalObject(body, "filter"),
            RequestJson.OptionalBool(body, "debias"));
        var hits = service.Search(name, query);
        return TypedResults.Json(new JsonObject
        {
            ["object"] = "list",
            ["hits"] = new JsonArray([.. hits.Select(h => (JsonNode)new JsonObject
            {
                ["id"] = h.Hit.Id,
                ["score"] = h.Hit.Score,
                ["metadata"] = h.Metadata.DeepClone(),
            })]),
        });
    }
}
