using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Serving.Server.Tests.Telemetry;

/// <summary>Logs written while a request runs carry its trace and span ids in their scopes (what JSON logs print).</summary>
[Collection(TelemetryCollection.Name)]
public sealed class LogTraceIdTests
{
    [Fact]
    public async Task RequestLogsCarryTheTraceId()
    {
        var capture = new ScopeCapture();
        using var server = new CapturingServer(capture);
        using HttpClient client = server.Client();
        using HttpResponseMessage response = await client.PostAsJsonAsync("v1/completions", new JsonObject { ["model"] = "tiny", ["prompt"] = "x", ["max_tokens"] = 2 });
        Assert.True(response.IsSuccessStatusCode);

        // Hosting logs "Request finished" inside the request's activity, after the response is sent: the client can read
        // the whole body first, so wait for the entry (the bound only keeps a broken server from hanging the run).
        static bool IsFinished((string Message, string TraceId) entry) => entry.Message.Contains("/v1/completions", StringComparison.Ordinal)
            && entry.Message.StartsWith("Request finished", StringComparison.Ordinal);
        for (int i = 0; i < 500 && !capture.TraceIds.Any(IsFinished); i++)
        {
            await Task.Delay(10);
        }

        string traceId = Assert.Single(capture.TraceIds, IsFinished).TraceId;
        Assert.Matches("^[0-9a-f]{32}$", traceId);
    }

    private sealed class CapturingServer(ScopeCapture capture) : ServingServer
    {
        protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
        {
            ["Logging:LogLevel:Microsoft.AspNetCore.Hosting.Diagnostics"] = "Information",
        };

        protected override void ConfigureWebHost(IWebHostBuilder builder)
        {
            base.ConfigureWebHost(builder);
            builder.ConfigureServices(services => services.AddSingleton<ILoggerProvider>(capture));
        }
    }

    /// <summary>Records (message, TraceId scope value) of every log entry.</summary>
    private sealed class ScopeCapture : ILoggerProvider, ISupportExternalScope
    {
        private IExternalScopeProvider? _scopes;

        public ConcurrentBag<(string Message, string TraceId)> TraceIds { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

        public void Dispose()
        {
        }

        private sealed class Logger(ScopeCapture owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => owner._scopes?.Push(state);

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                string traceId = "";
                owner._scopes?.ForEachScope((scope, _) =>
                {
                    if (scope is IEnumerable<KeyValuePair<string, object?>> values)
                    {
                        foreach (var (key, value) in values)
                        {
                            traceId = key == "TraceId" ? value?.ToString() ?? "" : traceId;
                        }
                    }
                }, (object?)null);
                owner.TraceIds.Add((formatter(state, exception), traceId));
            }
        }
    }
}
