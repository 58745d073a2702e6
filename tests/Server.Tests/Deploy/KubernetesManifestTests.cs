using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using Serving.Server.Tests.Telemetry;
using YamlDotNet.RepresentationModel;

namespace Serving.Server.Tests.Deploy;

/// <summary>
/// Renders each overlay of deploy/k8s with <c>kubectl kustomize</c> and checks the manifests
/// against the running server: every probe and scrape path answers, every port is the one the
/// server listens on, every metric the autoscaler and the router read is on /metrics, and the
/// objects select the Deployment's pods.
/// </summary>
// It scrapes /metrics: alone, like the telemetry tests (a second live host would own the "Serving" instruments).
[Collection(Telemetry.TelemetryCollection.Name)]
public sealed class KubernetesManifestTests(ServingServer server) : IClassFixture<ServingServer>
{
    private static readonly string K8s = Path.Combine(PrometheusDashboardTests.RepositoryRoot, "deploy", "k8s");

    // What the Gateway API Inference Extension's endpoint picker reads from each replica (docs/deploy.md).
    private static readonly string[] RouterMetrics = ["vllm:num_requests_waiting", "vllm:kv_cache_usage_perc"];

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task EveryProbeAndScrapeAnswersOnTheServersPort(string overlay)
    {
        Rendered k8s = new(Render(overlay));
        Assert.Equal(k8s.Ports["http"], Int(k8s.Env["ASPNETCORE_HTTP_PORTS"]));
        Assert.Equal(k8s.Ports["http"], Int(k8s.Pool["spec"]!["targetPorts"]![0]!["number"]));
        Assert.Contains((string)k8s.Service["spec"]!["ports"]![0]!["targetPort"]!, k8s.Ports.Keys);

        using HttpClient client = server.Client();
        foreach (string probe in new[] { "startupProbe", "livenessProbe", "readinessProbe" })
        {
            JsonNode get = k8s.Container[probe]!["httpGet"]!;
            Assert.Contains((string)get["port"]!, k8s.Ports.Keys);
            using HttpResponseMessage response = await client.GetAsync(((string)get["path"]!).TrimStart('/'));
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"{probe} {get["path"]}: {(int)response.StatusCode}");
        }

        JsonNode endpoint = k8s.Monitor["spec"]!["podMetricsEndpoints"]![0]!;
        Assert.Contains((string)endpoint["port"]!, k8s.Ports.Keys);
        using HttpResponseMessage scrape = await client.GetAsync(((string)endpoint["path"]!).TrimStart('/'));
        Assert.Equal(HttpStatusCode.OK, scrape.StatusCode);
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public async Task EveryMetricTheAutoscalerAndRouterReadIsOnTheServer(string overlay)
    {
        Rendered k8s = new(Render(overlay));
        using HttpClient client = server.Client();
        string metrics = await client.GetStringAsync(((string)k8s.Monitor["spec"]!["podMetricsEndpoints"]![0]!["path"]!).TrimStart('/'));

        JsonObject hpa = Single(k8s.Objects, "HorizontalPodAutoscaler");
        Assert.Equal((string)k8s.Deployment["metadata"]!["name"]!, (string)hpa["spec"]!["scaleTargetRef"]!["name"]!);
        foreach (JsonNode? metric in hpa["spec"]!["metrics"]!.AsArray())
        {
            AssertOnMetrics(metrics, (string)metric!["pods"]!["metric"]!["name"]!);
        }

        foreach (string name in RouterMetrics.Concat(AdapterSeries()))
        {
            AssertOnMetrics(metrics, name);
        }
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public void EverySelectorMatchesThePodsAndTheRouteThePool(string overlay)
    {
        Rendered k8s = new(Render(overlay));
        JsonObject labels = k8s.Deployment["spec"]!["template"]!["metadata"]!["labels"]!.AsObject();
        AssertSelects(labels, k8s.Deployment["spec"]!["selector"]!["matchLabels"]!, "Deployment");
        AssertSelects(labels, k8s.Service["spec"]!["selector"]!, "Service");
        AssertSelects(labels, k8s.Pool["spec"]!["selector"]!["matchLabels"]!, "InferencePool");
        AssertSelects(labels, k8s.Monitor["spec"]!["selector"]!["matchLabels"]!, "PodMonitor");

        JsonNode backend = Single(k8s.Objects, "HTTPRoute")["spec"]!["rules"]![0]!["backendRefs"]![0]!;
        Assert.Equal(("InferencePool", (string)k8s.Pool["metadata"]!["name"]!), ((string)backend["kind"]!, (string)backend["name"]!));
    }

    [Theory]
    [InlineData("cpu")]
    [InlineData("gpu")]
    public void PodsRunAsNonRootAndDrainBeforeTheyAreKilled(string overlay)
    {
        JsonObject deployment = Single(Render(overlay), "Deployment");
        JsonNode spec = deployment["spec"]!["template"]!["spec"]!;
        JsonNode container = spec["containers"]![0]!;
        Assert.True(Bool(spec["securityContext"]!["runAsNonRoot"]));
        Assert.True(Bool(container["securityContext"]!["readOnlyRootFilesystem"]));
        Assert.False(Bool(container["securityContext"]!["allowPrivilegeEscalation"]));
        var mounts = container["volumeMounts"]!.AsArray().Select(m => (string)m!["mountPath"]!).ToHashSet();
        Assert.Superset(new HashSet<string> { "/data", "/tmp" }, mounts);

        // The pod is killed at the grace period: the preStop sleep and the server's drain must fit in it.
        string sleep = (string)container["lifecycle"]!["preStop"]!["exec"]!["command"]!.AsArray().Last()!;
        int preStop = int.Parse(sleep.Split(' ')[^1], CultureInfo.InvariantCulture);
        int drain = Int(container["env"]!.AsArray().Single(e => (string)e!["name"]! == "Serving__ShutdownDrainSeconds")!["value"]);
        Assert.True(preStop + drain < Int(spec["terminationGracePeriodSeconds"]), $"preStop {preStop} s + drain {drain} s must fit in the grace period");

        JsonNode? gpus = container["resources"]!["limits"]!["nvidia.com/gpu"];
        Assert.Equal(overlay == "gpu", gpus is not null);
    }

    /// <summary>The objects of one overlay that the tests read, and the server container's ports and environment.</summary>
    private sealed class Rendered
    {
        public Rendered(List<JsonObject> objects)
        {
            Objects = objects;
            Deployment = Single(objects, "Deployment");
            Container = Deployment["spec"]!["template"]!["spec"]!["containers"]![0]!.AsObject();
            Ports = Container["ports"]!.AsArray().ToDictionary(p => (string)p!["name"]!, p => Int(p!["containerPort"]));
            Env = Container["env"]!.AsArray().ToDictionary(e => (string)e!["name"]!, e => (string)e!["value"]!);
            Service = Single(objects, "Service");
            Pool = Single(objects, "InferencePool");
            Monitor = Single(objects, "PodMonitor");
        }

        public List<JsonObject> Objects { get; }
        public JsonObject Deployment { get; }
        public JsonObject Container { get; }
        public Dictionary<string, int> Ports { get; }
        public Dictionary<string, string> Env { get; }
        public JsonObject Service { get; }
        public JsonObject Pool { get; }
        public JsonObject Monitor { get; }
    }

    private static void AssertOnMetrics(string metrics, string name) =>
        Assert.True(metrics.Contains($"\n{name}{{", StringComparison.Ordinal) || metrics.Contains($"\n{name} ", StringComparison.Ordinal), $"{name} is not on /metrics");

    private static void AssertSelects(JsonObject podLabels, JsonNode selector, string kind)
    {
        foreach ((string key, JsonNode? value) in selector.AsObject())
        {
            Assert.True(podLabels.TryGetPropertyValue(key, out JsonNode? label) && (string)label! == (string)value!, $"{kind} selects {key}={value}, which the pods lack");
        }
    }

    /// <summary>The series the Prometheus Adapter's rules query (deploy/k8s/prometheus-adapter-rules.yaml).</summary>
    private static IEnumerable<string> AdapterSeries()
    {
        JsonObject values = Parse(File.ReadAllText(Path.Combine(K8s, "prometheus-adapter-rules.yaml"))).Single();
        return values["rules"]!["custom"]!.AsArray().Select(rule => ((string)rule!["seriesQuery"]!).Split('{')[0]);
    }

    private static List<JsonObject> Render(string overlay)
    {
        var start = new ProcessStartInfo("kubectl", ["kustomize", Path.Combine(K8s, "overlays", overlay)])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process kubectl = Process.Start(start)!;
        Task<string> error = kubectl.StandardError.ReadToEndAsync();
        string yaml = kubectl.StandardOutput.ReadToEnd();
        kubectl.WaitForExit();
        Assert.True(kubectl.ExitCode == 0, $"kubectl kustomize {overlay}: {error.Result}");
        return Parse(yaml);
    }

    private static JsonObject Single(List<JsonObject> objects, string kind) => Assert.Single(objects, o => (string)o["kind"]! == kind);

    private static int Int(JsonNode? node) => int.Parse((string)node!, CultureInfo.InvariantCulture);

    private static int Int(string text) => int.Parse(text, CultureInfo.InvariantCulture);

    private static bool Bool(JsonNode? node) => bool.Parse((string)node!);

    /// <summary>Each YAML document as JSON, every scalar a string.</summary>
    private static List<JsonObject> Parse(string yaml)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(yaml));
        return stream.Documents.Select(document => ToJson(document.RootNode).AsObject()).ToList();
    }

    private static JsonNode ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(pair => KeyValuePair.Create(((YamlScalarNode)pair.Key).Value!, (JsonNode?)ToJson(pair.Value)))),
        YamlSequenceNode sequence => new JsonArray(sequence.Children.Select(child => (JsonNode?)ToJson(child)).ToArray()),
        _ => JsonValue.Create(((YamlScalarNode)node).Value ?? ""),
    };
}
