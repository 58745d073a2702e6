using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;
using Serving.Server.Hosting;

namespace Serving.Server.Tests.Hosting;

public class ServingOptionsTests
{
    [Fact]
    public void ModelEntriesAreCheckedWithTheirConfigurationKeys()
    {
        var options = new ServingOptions
        {
            Models =
            [
                new ModelOptions { Id = "a", Path = Path.GetTempPath() },
                new ModelOptions { Id = "a", Path = "/no/such/folder" },
                new ModelOptions { Id = "", Path = "" },
                new ModelOptions { Id = "b", Path = Path.GetTempPath(), Dtype = "q3" },
                new ModelOptions { Id = "c", Path = Path.GetTempPath(), Dtype = "q4" },
            ],
        };
        ValidateOptionsResult result = new ServingOptionsValidator().Validate(null, options);
        Assert.True(result.Failed);
        Assert.Contains("Serving:Models:1:Id 'a' is used twice.", result.Failures!);
        Assert.Contains("Serving:Models:1:Path '/no/such/folder' is not a folder.", result.Failures!);
        Assert.Contains("Serving:Models:2:Id is empty.", result.Failures!);
        Assert.Contains("Serving:Models:2:Path is empty.", result.Failures!);
        Assert.Contains(result.Failures!, failure => failure.StartsWith("Serving:Models:3:Dtype 'q3' is not one of fp32, fp16, q8,", StringComparison.Ordinal));
        Assert.DoesNotContain(result.Failures!, failure => failure.StartsWith("Serving:Models:4:", StringComparison.Ordinal));
    }

    [Fact]
    public void KvCompressionIsCheckedWithItsConfigurationKeys()
    {
        var options = new ServingOptions { KvCompression = new() { Policy = "fifo" } };
        ValidateOptionsResult result = new ServingOptionsValidator().Validate(null, options);
        Assert.Contains(result.Failures!, failure => failure.StartsWith("Serving:KvCompression:Policy: Unknown KV policy 'fifo'", StringComparison.Ordinal));
        result = new ServingOptionsValidator().Validate(null, new ServingOptions { KvCompression = new() { Policy = "window", Budget = 64, ProtectRecent = 64 } });
        Assert.Contains(result.Failures!, failure => failure.StartsWith("Serving:KvCompression:ProtectRecent:", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(-1, false)]
    [InlineData(0, true)]
    [InlineData(3600, true)]
    [InlineData(3601, false)]
    public void TheShutdownDrainIsZeroToAnHour(int seconds, bool isValid)
    {
        ValidateOptionsResult result = new ServingOptionsValidator().Validate(null, new ServingOptions { ShutdownDrainSeconds = seconds });
        Assert.Equal(isValid, result.Succeeded);
        if (!isValid)
        {
            Assert.Contains($"Serving:ShutdownDrainSeconds is {seconds}; it must be 0 to 3600 (an hour).", result.Failures!);
        }
    }

    [Fact]
    public void TheHostWaitsForTheDrainAndTheStopMargin()
    {
        using var server = new Apis.InMemoryServer(null, ("Serving:ShutdownDrainSeconds", "30"));
        var host = server.Factory.Services.GetRequiredService<IOptions<Microsoft.Extensions.Hosting.HostOptions>>().Value;
        Assert.Equal(TimeSpan.FromSeconds(30) + ShutdownDrain.StopMargin, host.ShutdownTimeout);
    }

    [Fact]
    public void ApiKeysAndOriginsAreCheckedWithTheirConfigurationKeys()
    {
        var options = new ServingOptions
        {
            ApiKeys = ["sk-1", " "],
            ApiKeysFile = "/no/such/keys.txt",
            Cors = new() { AllowedOrigins = ["https://app.example.com", "*", "http://localhost:3000", "https://app.example.com/", "app.example.com", "ftp://x.org"] },
        };
        ValidateOptionsResult result = new ServingOptionsValidator().Validate(null, options);
        Assert.Contains("Serving:ApiKeys:1 is empty.", result.Failures!);
        Assert.Contains(result.Failures!, failure => failure.StartsWith("Serving:ApiKeysFile '/no/such/keys.txt' cannot be read: ", StringComparison.Ordinal));
        Assert.Equal(new[] { "Serving:Cors:AllowedOrigins:3", "Serving:Cors:AllowedOrigins:4", "Serving:Cors:AllowedOrigins:5" },
            result.Failures!.Where(failure => failure.StartsWith("Serving:Cors:", StringComparison.Ordinal)).Select(failure => failure.Split(' ')[0]));
    }

    [Fact]
    public void AKeyFileWithoutAKeyIsRefused()
    {
        string file = Path.GetTempFileName();
        try
        {
            File.WriteAllText(file, "# keys of the team\n\n   \n");
            ValidateOptionsResult result = new ServingOptionsValidator().Validate(null, new ServingOptions { ApiKeysFile = file });
            Assert.Contains($"Serving:ApiKeysFile '{file}' holds no key (one a line; blank lines and # comments are skipped).", result.Failures!);
        }
        finally
        {
            File.Delete(file);
        }
    }

    [Theory]
    [InlineData("auto", true)]
    [InlineData("cuda:1", true)]
    [InlineData("tpu", false)]
    public void TheDeviceIsAutoCpuOrCuda(string device, bool isValid)
    {
        var result = new ServingOptionsValidator().Validate(null, new ServingOptions { Device = device });
        Assert.Equal(isValid, result.Succeeded);
        if (!isValid)
        {
            Assert.Contains(result.Failures!, failure => failure.StartsWith("Serving:Device: device 'tpu' is not auto, cpu, cuda or cuda:N", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void TheDefaultsAreValid() => Assert.True(new ServingOptionsValidator().Validate(null, new ServingOptions()).Succeeded);
}

/// <summary>A server configured with a model folder that does not exist.</summary>
public sealed class MisconfiguredServer : Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactory<Program>
{
    protected override void ConfigureWebHost(Microsoft.AspNetCore.Hosting.IWebHostBuilder builder)
    {
        builder.UseSetting("Serving:Models:0:Id", "gemma");
        builder.UseSetting("Serving:Models:0:Path", "/no/such/model");
        builder.UseSetting("Serving:KvCacheBytes", "-5");
        builder.UseSetting("Serving:KvCacheDtype", "fp8");
    }
}

public class ServerStartTests
{
    [Fact]
    public void ABadConfigurationStopsTheStartWithEveryReason()
    {
        using var server = new MisconfiguredServer();
        var error = Assert.Throws<OptionsValidationException>(() => server.CreateClient());
        Assert.Contains(error.Failures, failure => failure.Contains("Serving:Models:0:Path '/no/such/model' is not a folder."));
        Assert.Contains(error.Failures, failure => failure.Contains("KvCacheBytes"));
        Assert.Contains(error.Failures, failure => failure.Contains("KvCacheDtype"));
    }
}
