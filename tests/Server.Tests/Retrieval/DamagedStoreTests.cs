using System.Collections.Concurrent;
using System.Net.Http.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Data.Sqlite;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Serving.Server.Tests.Apis;

namespace Serving.Server.Tests.Retrieval;

/// <summary>A retrieval.db that SQLite cannot open leaves the server up: chat serves, retrieval answers 503 naming the file.</summary>
public sealed class DamagedStoreTests
{
    [Fact]
    public async Task AGarbageStoreLeavesChatServingAndRetrieval503NamingTheFile()
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDirectory);
        string store = Path.Combine(dataDirectory, "retrieval.db");
        File.WriteAllBytes(store, [.. Enumerable.Range(0, 8192).Select(i => (byte)(i * 7919 % 251))]);
        using var server = new InMemoryServer(dataDirectory);

        JsonObject ready = await ReadyAsync(server);
        Assert.Equal("degraded", ready["status"]!.GetValue<string>());
        Assert.Contains(store, ready["retrieval"]!.GetValue<string>());

        var (chatStatus, chat) = await server.PostAsync("/v1/chat/completions", new JsonObject
        {
            ["model"] = "tiny",
            ["messages"] = new JsonArray(new JsonObject { ["role"] = "user", ["content"] = "Hello" }),
            ["max_tokens"] = 3,
        });
        Assert.Equal(200, chatStatus);
        Assert.Equal("chat.completion", chat["object"]!.GetValue<string>());

        foreach ((int Status, JsonObject Body) answer in new[]
        {
            await server.SendAsync(HttpMethod.Get, "/v1/collections"),
            await server.SendAsync(HttpMethod.Get, "/v1/collections/any/items/a"),
            await server.PostAsync("/v1/collections", new JsonObject { ["name"] = "new", ["model"] = "clip-tiny" }),
            await server.PostAsync("/v1/collections/any/search", new JsonObject { ["text"] = "a photo" }),
        })
        {
            InMemoryServer.AssertError(answer, 503);
            Assert.Equal("store_unavailable", answer.Body["error"]!["code"]!.GetValue<string>());
            string message = answer.Body["error"]!["message"]!.GetValue<string>();
            Assert.Contains(store, message);
            Assert.Contains("not a database", message);
        }

        // Embeddings need no store.
        var (embedStatus, _) = await server.PostAsync("/v1/embeddings", new JsonObject { ["model"] = "clip-tiny", ["input"] = "a photo" });
        Assert.Equal(200, embedStatus);
    }

    [Theory]
    [InlineData("garbage", "not a database")]
    [InlineData("schema", "no such column")]
    public async Task TheLogNamesTheFileAtErrorLevel(string damage, string reason)
    {
        string dataDirectory = Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDirectory);
        string store = Path.Combine(dataDirectory, "retrieval.db");
        if (damage == "garbage")
        {
            File.WriteAllBytes(store, [.. Enumerable.Repeat((byte)0x5A, 4096)]);
        }
        else
        {
            // A SQLite file whose tables are not the store's (another program's, or an old layout).
            using var connection = new SqliteConnection($"Data Source={store};Pooling=False");
            connection.Open();
            using SqliteCommand command = connection.CreateCommand();
            command.CommandText = "CREATE TABLE collections (label TEXT)";
            command.ExecuteNonQuery();
        }

        var logs = new ErrorCapture();
        using var factory = new SerialHostFactory().WithWebHostBuilder(host =>
        {
            host.UseSetting("Serving:DataDirectory", dataDirectory);
            host.ConfigureServices(services => services.AddSingleton<ILoggerProvider>(logs));
        });
        using HttpClient client = factory.CreateClient();
        using HttpResponseMessage collections = await client.GetAsync("/v1/collections");
        Assert.Equal(503, (int)collections.StatusCode);
        string logged = Assert.Single(logs.Errors, message => message.Contains(store, StringComparison.Ordinal));
        Assert.Contains(reason, logged);
        factory.Dispose();
        SqliteConnection.ClearAllPools();
        Directory.Delete(dataDirectory, recursive: true);
    }

    /// <summary>Messages logged at error level or above.</summary>
    private sealed class ErrorCapture : ILoggerProvider
    {
        public ConcurrentBag<string> Errors { get; } = [];

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void Dispose() => Errors.Clear();

        private sealed class Logger(ErrorCapture owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => null;

            public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                if (IsEnabled(logLevel))
                {
                    owner.Errors.Add(formatter(state, exception));
                }
            }
        }
    }

    /// <summary>/health/ready once the decoders are loaded (the in-memory host loads them after start).</summary>
    private static async Task<JsonObject> ReadyAsync(InMemoryServer server)
    {
        for (int attempt = 0; attempt < 300; attempt++)
        {
            using HttpResponseMessage response = await server.Client.GetAsync("/health/ready");
            if (response.IsSuccessStatusCode)
            {
                return (await response.Content.ReadFromJsonAsync<JsonObject>())!;
            }

            await Task.Delay(100);
        }

        throw new TimeoutException("the server did not become ready in 30 s");
    }
}
