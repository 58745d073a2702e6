using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Npgsql;

namespace Serving.Runtime.Tests.Retrieval;

/// <summary>
/// A throwaway PostgreSQL 15 cluster (Debian's postgresql-15 binaries) in a temporary folder,
/// listening on 127.0.0.1 on a free port, trust authentication, no fsync (tests kill servers, not
/// the machine). initdb refuses to run as root, so under root the cluster belongs to the
/// <c>postgres</c> user and its commands run through <c>runuser</c>. One per test class
/// (<see cref="IClassFixture{TFixture}"/>); each test takes a database of its own.
/// </summary>
public sealed class PostgresCluster : IDisposable
{
    private const string Bin = "/usr/lib/postgresql/15/bin";

    private readonly string _folder = Path.Combine(Path.GetTempPath(), "serving-pg-" + Guid.NewGuid().ToString("N"));

    public PostgresCluster()
    {
        Directory.CreateDirectory(_folder);
        if (Environment.IsPrivilegedProcess)
        {
            Run("chown", "postgres", _folder);
        }

        Port = FreePort();
        Run(Bin + "/initdb", "-D", Data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync");
        Run(Bin + "/pg_ctl", "-D", Data, "-l", Path.Combine(_folder, "server.log"), "-w", "-t", "120",
            "-o", $"-p {Port} -k {_folder} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", "start");
    }

    public int Port { get; }

    private string Data => Path.Combine(_folder, "data");

    /// <summary>The connection string of the cluster's superuser on <paramref name="database"/>.</summary>
    public string ConnectionString(string database = "postgres", string user = "postgres", string? application = null) =>
        $"Host=127.0.0.1;Port={Port};Username={user};Database={database};Pooling=true" + (application is null ? "" : $";Application Name={application}");

    /// <summary>A new empty database; its connection string.</summary>
    public string CreateDatabase()
    {
        string name = "t" + Guid.NewGuid().ToString("N");
        Execute($"CREATE DATABASE {name}");
        return ConnectionString(name);
    }

    public void Execute(string sql, string database = "postgres")
    {
        using var connection = new NpgsqlConnection(ConnectionString(database, application: "tests"));
        connection.Open();
        using var command = new NpgsqlCommand(sql, connection);
        command.ExecuteNonQuery();
    }

    public void Dispose()
    {
        NpgsqlConnection.ClearAllPools();
        Run(Bin + "/pg_ctl", "-D", Data, "-m", "immediate", "stop");
        Directory.Delete(_folder, recursive: true);
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    /// <summary>Runs a command (as postgres when this process is root, except chown) and throws with its output when it fails.</summary>
    private static void Run(string program, params string[] arguments)
    {
        bool asPostgres = Environment.IsPrivilegedProcess && program != "chown";
        var start = new ProcessStartInfo(asPostgres ? "runuser" : program) { RedirectStandardOutput = true, RedirectStandardError = true };
        if (asPostgres)
        {
            foreach (string prefix in new[] { "-u", "postgres", "--", program })
            {
                start.ArgumentList.Add(prefix);
            }
        }

        foreach (string argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using Process process = Process.Start(start)!;
        Task<string> output = process.StandardOutput.ReadToEndAsync(), error = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} exited with {process.ExitCode}: {output.Result}{error.Result}");
        }
    }
}
