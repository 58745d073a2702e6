namespace Serving.Server.Http;

/// <summary>
/// Bad input found deep in a request's handling; the API layer answers it in the OpenAI error
/// shape with this status. Thrown before anything is written, so a refused request leaves no trace.
/// </summary>
public sealed class ApiException(int status, string message, string? param = null, string? code = null) : Exception(message)
{
    public int Status { get; } = status;

    public string? Param { get; } = param;

    public string? Code { get; } = code;

    public static ApiException Invalid(string param, string message) => new(StatusCodes.Status400BadRequest, message, param, "invalid_value");

    public static ApiException NotFound(string message, string? param = null) => new(StatusCodes.Status404NotFound, message, param, "not_found");

    public IResult ToResult() => OpenAiErrors.Create(Status, Message, Param, Code);
}

/// <summary>Maps <see cref="ApiException"/> to its OpenAI-shaped answer for a route group.</summary>
public sealed class ApiExceptionFilter : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (ApiException e)
        {
            return e.ToResult();
        }
    }
}
