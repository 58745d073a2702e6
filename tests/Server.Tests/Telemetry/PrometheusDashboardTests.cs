using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Server.Tests.Telemetry;

/// <summary>
/// The real Prometheus server (Debian's <c>prometheus</c>, installed by .ci/run) scrapes a
/// running Serving every second; after traffic, every PromQL expression of
/// deploy/grafana/serving.json must return at least one series with a finite value.
/// </summary>
[Collection(TelemetryCollection.Name)]
public sealed class PrometheusDashboardTests
{
    private const string PrometheusBinary = "/usr/bin/prometheus";

    public static string RepositoryRoot => typeof(PrometheusDashboardTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>()
        .Single(a => a.Key == "RepositoryRoot").Value!;

    /// <summary>Every expr of the dashboard, with Grafana's variables as the test fills them.</summary>
    public static List<string> DashboardQueries()
    {
        JsonNode dashboard = JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryRoot, "deploy/grafana/serving.json")))!;
        var queries = new List<string>();
        foreach (JsonNode? panel in dashboard["panels"]!.AsArray())
        {
            foreach (JsonNode? target in panel!["targets"]!.AsArray())
            {
                queries.Add(target!["expr"]!.GetValue<string>()
                    .Replace("$__rate_interval", "1m", StringComparison.Ordinal)
                    .Replace("$model", ".*", StringComparison.Ordinal));
            }
        }

        return queries;
    }

    [Fact]
    public void DashboardIsGrafanaJsonWithAPrometheusDatasourceVariable()
    {
        JsonNode dashboard = JsonNode.Parse(File.ReadAllText(Path.Combine(RepositoryRoot, "deploy/grafana/serving.json")))!;
        JsonArray variables = dashboard["templating"]!["list"]!.AsArray();
        Assert.Contains(variables, v => v!["type"]!.GetValue<string>() == "datasource" && v["query"]!.GetValue<string>() == "prometheus");
        foreach (JsonNode? panel in dashboard["panels"]!.AsArray())
        {
            Assert.Equal("${datasource}", panel!["datasource"]!["uid"]!.GetValue<string>());
            Assert.NotNull(panel["gridPos"]);
        }

        Assert.True(DashboardQueries().Count >= 20);
    }

    [Fact]
    public async Task EveryDashboardQueryReturnsDataFromARealPrometheus()
    {
        Assert.True(File.Exists(PrometheusBinary), $"{PrometheusBinary} is missing: install the Debian package prometheus (.ci/run does)");
        using var server = new ServingServer();
        using HttpClient client = server.Client();
        string folder = Directory.CreateTempSubdirectory("serving-prometheus-").FullName;
        int port = FreePort();
        File.WriteAllText(Path.Combine(folder, "prometheus.yml"), $"""
            global:
              scrape_interval: 1s
              evaluation_interval: 1s
            scrape_configs:
              - job_name: serving
                metrics_path: /metrics
                static_configs:
                  - targets: ["{server.BaseAddress.Authority}"]
            """);
        using Process prometheus = Process.Start(new ProcessStartInfo(PrometheusBinary,
            [$"--config.file={folder}/prometheus.yml", $"--storage.tsdb.path={folder}/data", $"--web.listen-address=127.0.0.1:{port}"])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        var log = new System.Text.StringBuilder();
        prometheus.ErrorDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        prometheus.OutputDataReceived += (_, e) => { lock (log) { log.AppendLine(e.Data); } };
        prometheus.BeginErrorReadLine();
        prometheus.BeginOutputReadLine();
        try
        {
            using var api = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(30) };
            // The query API answers 503 until the TSDB has opened; /-/ready says when it has.
            await WaitForAsync(async () =>
            {
                using HttpResponseMessage ready = await api.GetAsync("-/ready");
                return ready.IsSuccessStatusCode;
            }, "Prometheus ready", log);
            await WaitForAsync(async () => await QueryAsync(api, "up{job=\"serving\"} == 1") is { Count: > 0 }, "Prometheus scraping Serving", log);

            // Twice, with scrapes between: every counter and histogram then grows between two samples, so rate() has data.
            await TelemetryTraffic.DriveAsync(client, "prometheus-test", round: 1);
            await Task.Delay(TimeSpan.FromSeconds(3));
            await TelemetryTraffic.DriveAsync(client, "prometheus-test", round: 2);
            await Task.Delay(TimeSpan.FromSeconds(3));

            var empty = new List<string>();
            foreach (string query in DashboardQueries())
            {
                JsonArray result = await QueryAsync(api, query);
                if (!result.Any(series => IsFinite(series!["value"]![1]!.GetValue<string>())))
                {
                    empty.Add($"{query} → {result.ToJsonString()}");
                }
            }

            Assert.True(empty.Count == 0, "queries without data:\n" + string.Join("\n", empty));
        }
        finally
        {
            prometheus.Kill(entireProcessTree: true);
            await prometheus.WaitForExitAsync();
            Directory.Delete(folder, recursive: true);
        }
    }

    private static bool IsFinite(string value) =>
        double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out double number) && double.IsFinite(number);

    private static async Task<JsonArray> QueryAsync(HttpClient api, string query)
    {
        using HttpResponseMessage response = await api.GetAsync("api/v1/query?query=" + Uri.EscapeDataString(query));
        string body = await response.Content.ReadAsStringAsync();
        Assert.True(response.IsSuccessStatusCode, $"{query}: HTTP {(int)response.StatusCode} {body}");
        return JsonNode.Parse(body)!["data"]!["result"]!.AsArray();
    }

    private static async Task WaitForAsync(Func<Task<bool>> condition, string what, System.Text.StringBuilder log)
    {
        for (int attempt = 0; attempt < 300; attempt++)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // Prometheus is still starting.
            }

            await Task.Delay(100);
        }

        throw new TimeoutException($"{what} did not happen in 30 s; Prometheus said:\n{log}");
    }

    public static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}
