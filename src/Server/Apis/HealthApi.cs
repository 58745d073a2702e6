using Serving.Server.Hosting;

namespace Serving.Server.Apis;

/// <summary>Probes for orchestrators: liveness (the process serves HTTP) and readiness (the models are loaded).</summary>
public static class HealthApi
{
    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health/live", Live).WithTags("Health");
        app.MapGet("/health/ready", Ready).WithTags("Health");
        return app;
    }

    private static IResult Live() => TypedResults.Ok(new { status = "live" });

    private static IResult Ready(DecoderHost decoders) => decoders.IsReady
        ? TypedResults.Ok(new { status = "ready" })
        : TypedResults.Json(new { status = "loading" }, statusCode: StatusCodes.Status503ServiceUnavailable);
}
