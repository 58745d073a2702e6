using System.Diagnostics;
using System.Reflection;
using System.Text.Json.Nodes;

namespace Serving.Compat.Tests;

/// <summary>Runs a script of tests/Compat.Tests/js with Node.js: JSON request on stdin, JSON response on stdout.</summary>
internal static class NodePeer
{
    public static string JsDirectory { get; } = typeof(NodePeer).Assembly
        .GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "JsDirectory").Value!;

    public static JsonObject Run(string script, JsonObject request, TimeSpan timeout)
    {
        Assert.True(Directory.Exists(Path.Combine(JsDirectory, "node_modules")),
            $"npm packages missing in {JsDirectory}: run ./test.sh (npm ci --ignore-scripts there) first");

        var start = new ProcessStartInfo("node", [Path.Combine(JsDirectory, script)])
        {
            WorkingDirectory = JsDirectory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        using Process process = Process.Start(start)!;
        process.StandardInput.Write(request.ToJsonString());
        process.StandardInput.Close();
        Task<string> stdout = process.StandardOutput.ReadToEndAsync();
        Task<string> stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"node {script} did not finish in {timeout.TotalSeconds} s; stderr: {stderr.Result}");
        }

        Assert.True(process.ExitCode == 0, $"node {script} exited with {process.ExitCode}: {stderr.Result}");
        return JsonNode.Parse(stdout.Result)!.AsObject();
    }
}
