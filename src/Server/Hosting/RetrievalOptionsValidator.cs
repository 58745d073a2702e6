using Microsoft.Extensions.Options;
using Npgsql;
using Serving.Server.Retrieval;

namespace Serving.Server.Hosting;

/// <summary>Checks the store settings at start: an unknown store, or postgres without a connection string, stops the server with the reason.</summary>
public sealed class RetrievalOptionsValidator : IValidateOptions<RetrievalOptions>
{
    public ValidateOptionsResult Validate(string? name, RetrievalOptions options) => options.Store switch
    {
        RetrievalStores.Sqlite => ValidateOptionsResult.Success,
        RetrievalStores.Postgres when string.IsNullOrWhiteSpace(options.ConnectionString) =>
            ValidateOptionsResult.Fail("Serving:Retrieval:Store is 'postgres' but Serving:Retrieval:ConnectionString is empty (e.g. Host=db;Database=serving;Username=serving;Password=…)."),
        RetrievalStores.Postgres when !IsConnectionString(options.ConnectionString) =>
            ValidateOptionsResult.Fail("Serving:Retrieval:ConnectionString is not an Npgsql connection string (Key=value pairs separated by ';')."),
        RetrievalStores.Postgres when options.MaxStoreBytes > 0 =>
            ValidateOptionsResult.Fail("Serving:Retrieval:MaxStoreBytes caps retrieval.db and applies to the sqlite store only; bound a PostgreSQL database with its own quotas."),
        RetrievalStores.Postgres => ValidateOptionsResult.Success,
        _ => ValidateOptionsResult.Fail($"Serving:Retrieval:Store '{options.Store}' is not a store: use '{RetrievalStores.Sqlite}' (the default) or '{RetrievalStores.Postgres}'."),
    };

    private static bool IsConnectionString(string? text)
    {
        try
        {
            _ = new NpgsqlConnectionStringBuilder(text);
            return true;
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}
