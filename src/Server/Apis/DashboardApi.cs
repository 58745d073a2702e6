using System.Reflection;

namespace Serving.Server.Apis;

/// <summary>
/// <c>GET /dashboard</c>: a status page for people without Grafana (live throughput, latency,
/// queue and KV usage), drawn with uPlot from the app's own <c>/metrics</c>. The page and the
/// chart library are embedded in the assembly (src/Server/Dashboard), so no CDN and no content
/// root are needed.
/// </summary>
public static class DashboardApi
{
    private static readonly (string File, string ContentType)[] Files =
    [
        ("dashboard.js", "text/javascript; charset=utf-8"),
        ("uPlot.iife.min.js", "text/javascript; charset=utf-8"),
        ("uPlot.min.css", "text/css; charset=utf-8"),
    ];

    public const string Path = "/dashboard";

    public static IEndpointRouteBuilder MapDashboardApi(this IEndpointRouteBuilder app)
    {
        app.MapGet(Path, () => Resource("index.html", "text/html; charset=utf-8")).WithTags("Status").ExcludeFromDescription();
        foreach (var (file, contentType) in Files)
        {
            app.MapGet(Path + "/" + file, () => Resource(file, contentType)).ExcludeFromDescription();
        }

        return app;
    }

    private static IResult Resource(string file, string contentType)
    {
        Stream stream = Assembly.GetExecutingAssembly().GetManifestResourceStream("dashboard/" + file)
            ?? throw new InvalidOperationException($"dashboard/{file} is not embedded in {Assembly.GetExecutingAssembly().GetName().Name}: check Server.csproj");
        return TypedResults.Stream(stream, contentType);
    }
}
