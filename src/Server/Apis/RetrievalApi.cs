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
            .Produces<CollectionInfo>(StatusCodes.Status201Created).ProducesOpenAiErrors(400, 404, 409, 413, 415, 503, 507);
        collections.MapGet("", (RetrievalService service) => TypedResults.Ok(new CollectionList("list", [.. service.Collections.Select(c => c.Info())])))
            .ProducesOpenAiErrors(503);
        collections.MapGet("{name}", (string name, RetrievalService service) => TypedResults.Ok(service.Get(name).Info())).ProducesOpenAiErrors(404, 503);
        collections.MapDelete("{name}", Delete).Produces<CollectionDeleted>().ProducesOpenAiErrors(404, 503);
        collections.MapPost("{name}/items", Upload).DisableAntiforgery()
            // Accepts also routes by content type, so it names both; the multipart form is not this record (the description says what it is).
            .Accepts<UploadItemsRequest>("application/json", "multipart/form-data")
            .WithDescription("JSON: {\"items\": [{\"id\"?, \"image\", \"metadata\"?}]}. multipart/form-data: image files (in order), and optional fields "
                + "metadata (a JSON array, one object per file) and ids (a JSON array of strings, one per file).")
            .Produces<ItemIds>().ProducesOpenAiErrors(400, 404, 413, 415, 503, 507);
        collections.MapGet("{name}/items/{id}", GetItem).Produces<CollectionItem>().ProducesOpenAiErrors(400, 404, 503);
        collections.MapDelete("{name}/items/{id}", DeleteItem).Produces<ItemDeleted>().ProducesOpenAiErrors(404, 503);
        collections.MapPost("{name}/search", Search).Produces<SearchHits>().ProducesOpenAiErrors(400, 404, 413, 415, 503);
        return app;
    }

    private static async Task<IResult> Create(CreateCollectionRequest body, RetrievalService service, ClipEmbedder embedder)
    {
        string name = body.Name ?? throw ApiException.Invalid("name", "name is required");
        string model = body.Model ?? DefaultModel(embedder);
        CollectionState state = await service.CreateAsync(name, model, body.Debias);
        return TypedResults.Json(state.Info(), statusCode: StatusCodes.Status201Created);
    }

    /// <summary>With one CLIP model served, <c>model</c> may be left out.</summary>
    private static string DefaultModel(ClipEmbedder embedder) =>
        embedder.ModelIds.Count() == 1 ? embedder.ModelIds.Single() : throw ApiException.Invalid("model", "model is required (the CLIP model that embeds the collection)");

    private static async Task<IResult> Delete(string name, RetrievalService service)
    {
        await service.DeleteAsync(name);
        return TypedResults.Ok(new CollectionDeleted("collection.deleted", name, true));
    }

    private static async Task<IResult> Upload(string name, HttpRequest request, RetrievalService service)
    {
        service.Get(name);
        IReadOnlyList<NewItem> items = ItemUploads.IsMultipart(request)
            ? await ItemUploads.ReadMultipartAsync(request)
            : ItemUploads.ReadJson(await RequestJson.ReadAsync(request, RetrievalJson.Default.UploadItemsRequest), service.Options.MaxItemsPerRequest);
        IReadOnlyList<string> ids = await service.UpsertAsync(name, items);
        return TypedResults.Ok(new ItemIds("list", ids));
    }

    private static IResult GetItem(string name, string id, bool? include_vector, RetrievalService service)
    {
        var (item, metadata) = service.GetItem(name, id);
        return TypedResults.Ok(new CollectionItem("collection.item", item.Id, metadata, include_vector == true ? item.Vector : null));
    }

    private static async Task<IResult> DeleteItem(string name, string id, RetrievalService service)
    {
        await service.DeleteItemAsync(name, id);
        return TypedResults.Ok(new ItemDeleted("collection.item.deleted", id, true));
    }

    private static IResult Search(string name, SearchRequest body, RetrievalService service)
    {
        service.Get(name);
        var query = new SearchQuery(body.Text, body.Image is null ? null : ImageInput.DecodeBase64(body.Image, "image"), body.Vector,
            body.TopK ?? 10, body.Filter, body.Debias);
        var hits = service.Search(name, query);
        return TypedResults.Ok(new SearchHits("list", [.. hits.Select(h => new SearchHit(h.Hit.Id, h.Hit.Score, (JsonObject)h.Metadata.DeepClone()))]));
    }
}
