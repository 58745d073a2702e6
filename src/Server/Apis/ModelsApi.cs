using Serving.Runtime.Devices;
using Serving.Runtime.Models.Gemma3;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Hosting;
using Serving.Server.Http;

namespace Serving.Server.Apis;

/// <summary><c>GET /v1/models</c> and <c>GET /v1/models/{id}</c>: every model the server serves.</summary>
public static class ModelsApi
{
    /// <summary>The process start, as OpenAI's <c>created</c> for models we did not publish.</summary>
    private static readonly long Started = DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public static IEndpointRouteBuilder MapModelsApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/v1/models", List).WithTags("OpenAI").Produces<ModelList>().ProducesOpenAiErrors(503);
        app.MapGet("/v1/models/{id}", Get).WithTags("OpenAI").Produces<ModelCard>().ProducesOpenAiErrors(404, 503);
        return app;
    }

    private static IResult List(ModelCatalog catalog, DecoderHost decoders) =>
        TypedResults.Ok(new ModelList("list", catalog.Entries.Select(entry => Card(entry, decoders)).ToArray()));

    private static IResult Get(string id, ModelCatalog catalog, DecoderHost decoders) =>
        catalog.Find(id) is { } entry ? TypedResults.Ok(Card(entry, decoders)) : OpenAiErrors.ModelNotFound(id);

    /// <summary>A decoder reports its session's device once loaded (null before); CLIP models always run on the CPU.</summary>
    private static ModelCard Card(ModelEntry entry, DecoderHost decoders) =>
        decoders.Find(entry.Id) is { } engine
            ? new(entry.Id, "model", Started, "serving", engine.ContextLength, engine.Model.Device.Name)
            : new(entry.Id, "model", Started, "serving", null, entry.ModelType == Gemma3Config.ModelType ? null : ExecutionDevice.Cpu.Name);
}
