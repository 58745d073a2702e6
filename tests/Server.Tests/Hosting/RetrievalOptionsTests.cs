using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Serving.Server.Hosting;
using Serving.Server.Retrieval;
using Serving.Server.Tests.Apis;

namespace Serving.Server.Tests.Hosting;

public sealed class RetrievalOptionsTests
{
    [Theory]
    [InlineData("mongo", null, "Serving:Retrieval:Store 'mongo' is not a store: use 'sqlite' (the default) or 'postgres'.")]
    [InlineData("postgres", null, "Serving:Retrieval:Store is 'postgres' but Serving:Retrieval:ConnectionString is empty")]
    [InlineData("postgres", "Host", "Serving:Retrieval:ConnectionString is not an Npgsql connection string")]
    public void AStoreThatCannotBeOpenedStopsTheStart(string store, string? connectionString, string reason)
    {
        using var factory = new SerialHostFactory().WithWebHostBuilder(host =>
        {
            host.UseSetting("Serving:DataDirectory", Path.Combine(Path.GetTempPath(), "serving-server-tests", Guid.NewGuid().ToString("N")));
            host.UseSetting("Serving:Retrieval:Store", store);
            if (connectionString is not null)
            {
                host.UseSetting("Serving:Retrieval:ConnectionString", connectionString);
            }
        });
        var error = Assert.Throws<OptionsValidationException>(() => factory.CreateClient());
        Assert.Contains(error.Failures, failure => failure.StartsWith(reason, StringComparison.Ordinal));
    }

    [Fact]
    public async Task SqliteInTheDataDirectoryIsTheDefault()
    {
        using var server = new InMemoryServer();
        RetrievalService service = server.Factory.Services.GetRequiredService<RetrievalService>();
        Assert.Equal(RetrievalStores.Sqlite, service.Options.Store);
        Assert.Null(service.Follower);
        Assert.Equal(Path.GetFullPath(Path.Combine(server.DataDirectory, "retrieval.db")), service.StoreLocation);
        Assert.Equal(201, (await server.PostAsync("/v1/collections", new System.Text.Json.Nodes.JsonObject { ["name"] = "c", ["model"] = "clip-tiny" })).Status);
        Assert.True(File.Exists(service.StoreLocation));
    }
}
