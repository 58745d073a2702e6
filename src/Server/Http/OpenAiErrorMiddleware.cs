using System.Text.RegularExpressions;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Data.Sqlite;
using Serving.Runtime.Retrieval;

namespace Serving.Server.Http;

/// <summary>
/// Turns what escapes a handler into the OpenAI error shape: an <see cref="ApiException"/>
/// keeps its status; ASP.NET Core's <see cref="BadHttpRequestException"/> too (413 for a body
/// over the limit, 400 for a malformed one or a query value that does not bind); a full disk
/// is a 507; anything else is a 500 whose details stay in the log. Handlers validate their
/// own input, so a 500 here is a bug, never bad input.
/// </summary>
public sealed partial class OpenAiErrorMiddleware(RequestDelegate next, ILogger<OpenAiErrorMiddleware> logger)
{
    /// <summary>ENOSPC on Linux (the HResult .NET gives an IOException from errno 28), ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL on Windows.</summary>
    private static readonly int[] DiskFullResults = [28, unchecked((int)0x80070070), unchecked((int)0x80070027)];

    /// <summary>SQLITE_FULL: the database or the disk under it is full.</summary>
    private const int SqliteFull = 13;

    public async Task InvokeAsync(HttpContext context)
    {
        try
        {
            await next(context);
        }
        catch (ApiException e) when (!context.Response.HasStarted)
        {
            await Write(context, e.Status, e.Message, e.Param, e.Code);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            if (e.StatusCode == StatusCodes.Status413PayloadTooLarge || e.InnerException is BadHttpRequestException { StatusCode: 413 })
            {
                await Write(context, StatusCodes.Status413PayloadTooLarge, OpenAiErrors.TooLargeMessage(context), null, OpenAiErrors.TooLargeCode);
                return;
            }

            // A body that is not declared JSON keeps its 415 (RequestDelegateFactory throws it for a typed body).
            int status = e.StatusCode == StatusCodes.Status415UnsupportedMediaType ? e.StatusCode : StatusCodes.Status400BadRequest;
            var (message, param, code) = Describe(e);
            await Write(context, status, message, param, code);
        }
        catch (StoreUnavailableException e) when (!context.Response.HasStarted)
        {
            // The shared store is down or restarting; retrying (another replica, or later) is the client's move.
            logger.LogWarning("{Method} {Path}: {Reason}", context.Request.Method, context.Request.Path, e.Message);
            await Write(context, StatusCodes.Status503ServiceUnavailable, e.Message + " Retry: a write cut off by this is either whole or absent, never partial.", null, "store_unavailable");
        }
        catch (Exception e) when (!context.Response.HasStarted && IsStorageFull(e))
        {
            // 507 Insufficient Storage (RFC 4918), not 503: retrying soon does not help until an
            // operator frees space, and monitoring can tell it from overload (429) and loading (503).
            logger.LogError(e, "{Method} {Path}: the disk or the store is full", context.Request.Method, context.Request.Path);
            await Write(context, StatusCodes.Status507InsufficientStorage,
                "The server's storage is full; nothing of this request was stored. Retry after the operator frees space.", null, "insufficient_storage");
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            logger.LogDebug("{Path}: the client went away", context.Request.Path);
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            logger.LogError(e, "{Method} {Path} failed", context.Request.Method, context.Request.Path);
            await Write(context, StatusCodes.Status500InternalServerError, "The server failed to process the request; its log has the details.", null, "internal_error");
        }
    }

    /// <summary>
    /// SQLite reports a full disk (ENOSPC) and a full store (max_page_count) as SQLITE_FULL; other
    /// writes (a multipart upload buffered to disk) throw an <see cref="IOException"/> with the OS error.
    /// </summary>
    public static bool IsStorageFull(Exception? e)
    {
        for (; e is not null; e = e.InnerException)
        {
            if (e is SqliteException { SqliteErrorCode: SqliteFull } || (e is IOException && DiskFullResults.Contains(e.HResult)))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// A body that is not JSON, a field of the wrong type (the field from the JSON path), or a
    /// route or query value that does not bind (the parameter from ASP.NET Core's message).
    /// </summary>
    private static (string Message, string? Param, string Code) Describe(BadHttpRequestException e)
    {
        if (e.InnerException is null && BindingFailure().Match(e.Message) is { Success: true } binding)
        {
            string name = binding.Groups["name"].Value;
            return ($"The parameter '{name}' is missing or has the wrong type ({e.Message})", name, "invalid_value");
        }

        if (e.InnerException is System.Text.Json.JsonException json)
        {
            return OpenAiErrors.DescribeJson(json);
        }

        return e.StatusCode == StatusCodes.Status415UnsupportedMediaType
            ? (OpenAiErrors.NotJsonMessage, null, OpenAiErrors.NotJsonCode)
            : ("The request body is missing or not valid JSON.", null, "invalid_json");
    }

    /// <summary>RequestDelegateFactory's messages: <c>Failed to bind parameter "bool? include_vector" from "x".</c> and <c>Required parameter "T name" was not provided …</c>.</summary>
    [GeneratedRegex("""^(Failed to bind|Required) parameter "[^"]* (?<name>[A-Za-z_][A-Za-z0-9_]*)" """)]
    private static partial Regex BindingFailure();

    private static Task Write(HttpContext context, int status, string message, string? param, string? code)
    {
        context.Response.Clear();
        context.Response.StatusCode = status;
        return context.Response.WriteAsJsonAsync(OpenAiErrors.Body(status, message, param, code));
    }
}
