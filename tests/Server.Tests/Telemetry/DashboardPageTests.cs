using System.Diagnostics;
using SkiaSharp;

namespace Serving.Server.Tests.Telemetry;

/// <summary>
/// The /dashboard status page in headless Chromium (Debian's <c>chromium</c>, installed by
/// .ci/run) while requests run: the screenshot must show each chart's line in its series
/// colour, and the throughput line must rise above the zero line. Charts without data draw
/// only grey axes, so an empty page fails.
/// </summary>
[Collection(TelemetryCollection.Name)]
public sealed class DashboardPageTests
{
    private const string ChromiumBinary = "/usr/bin/chromium";

    // The first series of each chart (src/Server/Dashboard/dashboard.js).
    private static readonly (string Chart, SKColor Colour)[] Lines =
    [
        ("throughput", SKColor.Parse("#1f77b4")),
        ("latency", SKColor.Parse("#2ca02c")),
        ("queue", SKColor.Parse("#9467bd")),
        ("kv", SKColor.Parse("#17becf")),
    ];

    [Fact]
    public async Task PageServesTheChartLibraryItself()
    {
        using var server = new ServingServer();
        using HttpClient client = server.Client();
        string html = await client.GetStringAsync("dashboard");
        Assert.Contains("/dashboard/uPlot.iife.min.js", html, StringComparison.Ordinal);
        Assert.DoesNotContain("https://", html, StringComparison.Ordinal);
        string library = await client.GetStringAsync("dashboard/uPlot.iife.min.js");
        Assert.True(library.Length > 40_000);
        Assert.Contains("serving_generation_tokens_total", await client.GetStringAsync("dashboard/dashboard.js"), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChartsRenderLiveDataInHeadlessChromium()
    {
        Assert.True(File.Exists(ChromiumBinary), $"{ChromiumBinary} is missing: install the Debian package chromium (.ci/run does)");
        using var server = new ServingServer();
        string folder = Directory.CreateTempSubdirectory("serving-dashboard-").FullName;
        using var stop = new CancellationTokenSource();
        Task[] load = [.. Enumerable.Range(0, 3).Select(i => LoadAsync(server, i, stop.Token))];
        try
        {
            await Task.Delay(TimeSpan.FromSeconds(1));
            string screenshot = Path.Combine(folder, "dashboard.png");
            await ScreenshotAsync(new Uri(server.BaseAddress, "dashboard?interval=500"), screenshot, folder);
            using SKBitmap bitmap = SKBitmap.Decode(screenshot) ?? throw new InvalidDataException($"{screenshot} is not an image");
            foreach (var (chart, colour) in Lines)
            {
                var rows = Matching(bitmap, colour);
                Assert.True(rows.Count >= 40, $"the {chart} chart shows {rows.Count} pixels of its line colour {colour}");
                if (chart == "throughput")
                {
                    // A flat line at zero covers two rows; a live rate spans many.
                    Assert.True(rows.Select(p => p.Y).Distinct().Count() >= 6, "the throughput line never leaves zero");
                }
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load);
            Directory.Delete(folder, recursive: true);
        }
    }

    private static async Task LoadAsync(ServingServer server, int client, CancellationToken stop)
    {
        using HttpClient http = server.Client();
        while (!stop.IsCancellationRequested)
        {
            using var content = new StringContent($$"""{"model":"tiny","prompt":"Client {{client}} says","max_tokens":24}""", System.Text.Encoding.UTF8, "application/json");
            using HttpResponseMessage response = await http.PostAsync("v1/completions", content, CancellationToken.None);
            Assert.True(response.IsSuccessStatusCode, await response.Content.ReadAsStringAsync(CancellationToken.None));
        }
    }

    private static async Task ScreenshotAsync(Uri page, string screenshot, string folder)
    {
        // Virtual time runs timers ahead while no fetch is pending: about 16 polls of /metrics.
        using Process chromium = Process.Start(new ProcessStartInfo(ChromiumBinary,
            ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", $"--user-data-dir={folder}/profile",
             "--window-size=1300,720", "--virtual-time-budget=8000", $"--screenshot={screenshot}", page.ToString()])
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        })!;
        Task<string> errors = chromium.StandardError.ReadToEndAsync();
        _ = chromium.StandardOutput.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(120));
        await chromium.WaitForExitAsync(timeout.Token);
        Assert.True(File.Exists(screenshot), $"chromium wrote no screenshot (exit {chromium.ExitCode}): {await errors}");
    }

    /// <summary>Pixels within 6 levels per channel of <paramref name="colour"/> (the line's core; the key's swatches are paler).</summary>
    private static List<SKPointI> Matching(SKBitmap bitmap, SKColor colour)
    {
        var points = new List<SKPointI>();
        for (int y = 0; y < bitmap.Height; y++)
        {
            for (int x = 0; x < bitmap.Width; x++)
            {
                SKColor pixel = bitmap.GetPixel(x, y);
                if (Math.Abs(pixel.Red - colour.Red) <= 6 && Math.Abs(pixel.Green - colour.Green) <= 6 && Math.Abs(pixel.Blue - colour.Blue) <= 6)
                {
                    points.Add(new SKPointI(x, y));
                }
            }
        }

        return points;
    }
}
