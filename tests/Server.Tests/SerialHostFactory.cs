using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Hosting;

namespace Serving.Server.Tests;

/// <summary>
/// A test host factory that builds one host at a time. WebApplicationFactory finds a minimal-API
/// host through a process-wide DiagnosticListener, so two hosts built at once on parallel test
/// classes can catch each other's and one is disposed while starting (ObjectDisposedException
/// from GetServerAddressFeature or ConfigureHostBuilder; dotnet/aspnetcore#33494). Building is
/// fast (the decoders load after start), so the lock costs little parallelism.
/// </summary>
public class SerialHostFactory : WebApplicationFactory<Program>
{
    private static readonly Lock Building = new();

    protected override IHost CreateHost(IHostBuilder builder)
    {
        lock (Building)
        {
            return base.CreateHost(builder);
        }
    }
}
