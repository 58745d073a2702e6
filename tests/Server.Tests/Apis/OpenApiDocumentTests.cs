using System.Reflection;

namespace Serving.Server.Tests.Apis;

/// <summary>
/// openapi.yaml at the repository root is the document the app serves at
/// /swagger/v1/swagger.yaml. After changing an endpoint, regenerate it with
/// <c>SERVING_UPDATE_OPENAPI=1 dotnet test tests/Server.Tests --filter OpenApiDocumentTests</c>.
/// </summary>
public class OpenApiDocumentTests(ServingServer server) : IClassFixture<ServingServer>
{
    private static readonly string FilePath = Path.Combine(
        typeof(OpenApiDocumentTests).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == "RepositoryRoot").Value!,
        "openapi.yaml");

    [Fact]
    public async Task TheServedDocumentIsTheCommittedFile()
    {
        using HttpClient client = server.Client();
        string served = (await client.GetStringAsync("swagger/v1/swagger.yaml")).ReplaceLineEndings("\n");
        if (Environment.GetEnvironmentVariable("SERVING_UPDATE_OPENAPI") == "1")
        {
            await File.WriteAllTextAsync(FilePath, served);
        }

        Assert.True(File.Exists(FilePath), $"{FilePath} is missing; see this test's summary to generate it");
        string committed = (await File.ReadAllTextAsync(FilePath)).ReplaceLineEndings("\n");
        Assert.True(committed == served,
            "openapi.yaml differs from the served document; regenerate it: SERVING_UPDATE_OPENAPI=1 dotnet test tests/Server.Tests --filter OpenApiDocumentTests");
    }

    [Fact]
    public async Task SwaggerUiIsServed()
    {
        using HttpClient client = server.Client();
        string page = await client.GetStringAsync("swagger/index.html");
        Assert.Contains("swagger-ui", page);
    }
}
