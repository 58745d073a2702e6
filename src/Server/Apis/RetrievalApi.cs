using System.Text.Json.Nodes;
using Serving.Runtime.Retrieval;
using Serving.Server.Http;
using Serving.Server.Retrieval;

namespace Serving.Server.Apis;

/// <summary>Image collections: create, list, upload (JSON or multipart), get, delete, search.</summary>
public static class RetrievalApi
{
    public static IEndpointRouteBuilder MapRetrievalApi(this IEndpointRouteBuilder app)
    {
        RouteGroupBuilder collections = app.MapGroup("/v1/collections").WithTags("Collections").AddEndpointFilter<ApiExceptionFilter>();
        collections.MapPost("", Create)
            .Produces(StatusCodes.Status201Created, contentType: "application/json").ProducesOpenAiErrors(400, 404, 409, 413, 415, 503, 507);
        collections.MapGet("", (RetrievalService service) => TypedResults.Json(new JsonObject
        {
            ["object"] = "list",
            ["data"] = new JsonArray([.. service.Collections.Select(c => (JsonNode)c.ToJson())]),
        })).Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(503);
        collections.MapGet("{name}", (string name, RetrievalService service) => TypedResults.Json(service.Get(name).ToJson()))
            .Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(404, 503);
        collections.MapDelete("{name}", Delete).Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(404, 503);
        collections.MapPost("{name}/items", Upload).DisableAntiforgery()
            // Accepts also routes by content type, so it names both; the multipart form is not this record (the description says what it is).
            .Accepts<UploadItemsRequest>("application/json", "multipart/form-data")
            .WithDescription("JSON: {\"items\": [{\"id\"?, \"image\", \"metadata\"?}]}. multipart/form-data: image files (in order), and optional fields "
                + "metadata (a JSON array, one object per file) and ids (a JSON array of strings, one per file).")
            .Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(400, 404, 413, 415, 503, 507);
        collections.MapGet("{name}/items/{id}", GetItem).Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(400, 404, 503);
        collections.MapDelete("{name}/items/{id}", DeleteItem).Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(404, 503);
        collections.MapPost("{name}/search", Search)
            .Produces(StatusCodes.Status200OK, contentType: "application/json").ProducesOpenAiErrors(400, 404, 413, 415, 503);
        return app;
    }

    private static async Task<IResult> Create(CreateCollectionRequest body, RetrievalService service, ClipEmbedder embedder)
    {
        string name = body.Name ?? throw ApiException.Invalid("name", "name is required");
        string model = body.Model ?? DefaultModel(embedder);
        CollectionState state = await service.CreateAsync(name, model, body.Debias);
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
            : ItemUploads.ReadJson(await RequestJson.ReadAsync(request, RetrievalJson.Default.UploadItemsRequest), service.Options.MaxItemsPerRequest);
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

    private static IResult Search(string name, SearchRequest body, RetrievalService service)
    {
        service.Get(name);
        var query = new SearchQuery(body.Text, body.Image is null ? null : ImageInput.DecodeBase64(body.Image, "image"), body.Vector,
            body.TopK ?? 10, body.Filter, body.Debias);
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
