using Serving.Server.Hosting;

namespace Serving.Server.Apis;

/// <summary>Probes for orchestrators: liveness (the process serves HTTP) and readiness (the models are loaded).</summary>
public static class HealthApi
{
    public const string LivePath = "/health/live";

    public const string ReadyPath = "/health/ready";

    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet(LivePath, Live).WithTags("Health");
        app.MapGet(ReadyPath, Ready).WithTags("Health");
        return app;
    }

    private static IResult Live() => TypedResults.Ok(new { status = "live" });

    private static IResult Ready(DecoderHost decoders) => decoders.IsReady
        ? TypedResults.Ok(new { status = "ready" })
        : TypedResults.Json(new { status = "loading" }, statusCode: StatusCodes.Status503ServiceUnavailable);
}
