using Serving.Server.Hosting;
using Serving.Server.Retrieval;

namespace Serving.Server.Apis;

/// <summary>
/// Probes for orchestrators: liveness (the process serves HTTP) and readiness (the models are
/// loaded). Readiness is about the decoders: a retrieval store that could not be opened leaves the
/// server ready (200) for chat and completions, with <c>"status":"degraded"</c> and the reason under
/// <c>"retrieval"</c>; taking the pod out of rotation would not repair the file, and would stop chat.
/// While the host stops, readiness is 503 <c>"draining"</c> and liveness stays 200.
/// </summary>
public static class HealthApi
{
    public const string LivePath = "/health/live";

    public const string ReadyPath = "/health/ready";

    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet(LivePath, Live).WithTags("Health");
        app.MapGet(ReadyPath, Ready).WithTags("Health")
            .Produces(StatusCodes.Status200OK, contentType: "application/json").Produces(StatusCodes.Status503ServiceUnavailable, contentType: "application/json");
        return app;
    }

    private static IResult Live() => TypedResults.Ok(new { status = "live" });

    private static IResult Ready(DecoderHost decoders, RetrievalService retrieval, ShutdownDrain drain) => (decoders.IsReady, retrieval.Unavailable) switch
    {
        _ when drain.IsDraining => TypedResults.Json(new { status = "draining" }, statusCode: StatusCodes.Status503ServiceUnavailable),
        (false, _) => TypedResults.Json(new { status = "loading" }, statusCode: StatusCodes.Status503ServiceUnavailable),
        (true, null) => TypedResults.Ok(new { status = "ready" }),
        (true, string reason) => TypedResults.Ok(new { status = "degraded", retrieval = reason }),
    };
}
