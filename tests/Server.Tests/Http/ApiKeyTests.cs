using System.ClientModel;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using Microsoft.Extensions.Options;
using OpenAI;
using OpenAI.Chat;

namespace Serving.Server.Tests.Http;

/// <summary>The server with one key in Serving:ApiKeys and two more in a key file.</summary>
public class ApiKeyServer : ServingServer
{
    public const string Key = "sk-serving-test-1";

    public const string FileKey = "sk-from-the-file";

    // Field initializers run before the base constructor, which starts the server and reads Settings.
    private readonly string _keysFile = WriteKeysFile();

    protected virtual bool ProtectMetrics => false;

    protected override IReadOnlyDictionary<string, string> Settings => new Dictionary<string, string>
    {
        ["Serving:ApiKeys:0"] = Key,
        ["Serving:ApiKeysFile"] = _keysFile,
        ["Serving:ProtectMetrics"] = ProtectMetrics ? "true" : "false",
    };

    public HttpClient Client(string? key)
    {
        HttpClient client = Client();
        if (key is not null)
        {
            client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        }

        return client;
    }

    private static string WriteKeysFile()
    {
        string file = Path.GetTempFileName();
        File.WriteAllText(file, $"# keys of the test\n\n  {FileKey}  \n# sk-commented-out\nsk-another\n");
        return file;
    }

    protected override void Dispose(bool disposing)
    {
        base.Dispose(disposing);
        if (disposing)
        {
            File.Delete(_keysFile);
        }
    }
}

/// <summary>The same, with Serving:ProtectMetrics.</summary>
public sealed class ProtectedMetricsServer : ApiKeyServer
{
    protected override bool ProtectMetrics => true;
}

public class ApiKeyTests(ApiKeyServer server) : IClassFixture<ApiKeyServer>
{
    [Fact]
    public async Task NoKeyIsA401InTheOpenAiShapeWithWwwAuthenticate()
    {
        using HttpClient client = server.Client(key: null);
        using HttpResponseMessage response = await client.GetAsync("v1/models");
        await KeyRefusal.AssertRefused(response);
    }

    [Theory]
    [InlineData("Bearer sk-wrong")]
    [InlineData("Bearer sk-serving-test-")]
    [InlineData("Bearer sk-commented-out")]
    [InlineData("Basic c2stc2VydmluZy10ZXN0LTE6")]
    [InlineData("sk-serving-test-1")]
    public async Task AWrongKeyIsA401(string authorization)
    {
        using HttpClient client = server.Client(key: null);
        using var request = new HttpRequestMessage(HttpMethod.Post, "v1/completions") { Content = JsonContent.Create(new { model = "tiny", prompt = "In", max_tokens = 1 }) };
        request.Headers.TryAddWithoutValidation("Authorization", authorization);
        using HttpResponseMessage response = await client.SendAsync(request);
        await KeyRefusal.AssertRefused(response);
    }

    [Theory]
    [InlineData(ApiKeyServer.Key)]
    [InlineData(ApiKeyServer.FileKey)]
    [InlineData("sk-another")]
    public async Task AKeyFromTheSettingsOrTheFileIsServed(string key)
    {
        using HttpClient client = server.Client(key);
        using HttpResponseMessage models = await client.GetAsync("v1/models");
        Assert.Equal(HttpStatusCode.OK, models.StatusCode);
        using HttpResponseMessage completion = await client.PostAsJsonAsync("v1/completions", new { model = "tiny", prompt = "In the beginning", max_tokens = 2, temperature = 0 });
        Assert.Equal(HttpStatusCode.OK, completion.StatusCode);
    }

    [Fact]
    public async Task TheKeyMayComeAsXApiKey()
    {
        using HttpClient client = server.Client(key: null);
        client.DefaultRequestHeaders.Add("x-api-key", ApiKeyServer.Key);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("v1/models")).StatusCode);
    }

    [Theory]
    [InlineData("health/live")]
    [InlineData("health/ready")]
    [InlineData("metrics")]
    [InlineData("dashboard")]
    [InlineData("dashboard/dashboard.js")]
    public async Task HealthMetricsAndDashboardAreOpenByDefault(string path)
    {
        using HttpClient client = server.Client(key: null);
        using HttpResponseMessage response = await client.GetAsync(path);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Theory]
    [InlineData("swagger/v1/swagger.yaml")]
    [InlineData("swagger/index.html")]
    [InlineData("no/such/route")]
    [InlineData("health/live/more")]
    public async Task SwaggerAndUnknownPathsNeedAKey(string path)
    {
        using HttpClient client = server.Client(key: null);
        using HttpResponseMessage response = await client.GetAsync(path);
        await KeyRefusal.AssertRefused(response);
    }

    [Fact]
    public async Task TheOpenAiSdkSendsItsApiKey()
    {
        var options = new OpenAIClientOptions { Endpoint = new Uri(server.BaseAddress, "v1") };
        ChatCompletion completion = await new ChatClient("tiny", new ApiKeyCredential(ApiKeyServer.Key), options)
            .CompleteChatAsync([new UserChatMessage("Who made the earth?")], new ChatCompletionOptions { MaxOutputTokenCount = 4, Temperature = 0 });
        Assert.True(completion.Usage.OutputTokenCount is >= 1 and <= 4);

        var refused = await Assert.ThrowsAsync<ClientResultException>(() =>
            new ChatClient("tiny", new ApiKeyCredential("sk-wrong"), options).CompleteChatAsync([new UserChatMessage("hi")]));
        Assert.Equal(401, refused.Status);
    }
}

/// <summary>The answer to a request without a valid key.</summary>
public static class KeyRefusal
{
    public static async Task AssertRefused(HttpResponseMessage response)
    {
        Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
        Assert.Equal("Bearer", Assert.Single(response.Headers.WwwAuthenticate).Scheme);
        OpenAiErrorReader.Error error = await OpenAiErrorReader.Read(response);
        Assert.Equal("authentication_error", error.Type);
        Assert.Equal("invalid_api_key", error.Code);
        Assert.Null(error.Param);
        Assert.DoesNotContain("sk-", error.Message, StringComparison.Ordinal);
    }
}

public class ProtectedMetricsTests(ProtectedMetricsServer server) : IClassFixture<ProtectedMetricsServer>
{
    [Theory]
    [InlineData("metrics")]
    [InlineData("dashboard")]
    [InlineData("dashboard/uPlot.min.css")]
    public async Task MetricsAndDashboardNeedAKey(string path)
    {
        using HttpClient anonymous = server.Client(key: null);
        await KeyRefusal.AssertRefused(await anonymous.GetAsync(path));
        using HttpClient client = server.Client(ApiKeyServer.Key);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync(path)).StatusCode);
    }

    [Fact]
    public async Task HealthStaysOpen()
    {
        using HttpClient client = server.Client(key: null);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("health/ready")).StatusCode);
    }
}

/// <summary>A server whose key file is missing.</summary>
public sealed class MissingKeyFileServer : Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder) =>
        builder.UseSetting("Serving:ApiKeysFile", "/no/such/serving-keys.txt");
}

public class ApiKeyStartTests
{
    [Fact]
    public void AMissingKeyFileStopsTheStartNamingIt()
    {
        using var server = new MissingKeyFileServer();
        var error = Assert.Throws<OptionsValidationException>(() => server.CreateClient());
        Assert.Contains(error.Failures, failure => failure.StartsWith("Serving:ApiKeysFile '/no/such/serving-keys.txt' cannot be read", StringComparison.Ordinal));
    }
}
