namespace Serving.Server.Apis;

/// <summary>Liveness for orchestrators: the process is up and serving HTTP.</summary>
public static class HealthApi
{
    public static IEndpointRouteBuilder MapHealthApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/health/live", Live);
        return app;
    }

    private static IResult Live() => TypedResults.Ok(new { status = "live" });
}
