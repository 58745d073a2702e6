using Microsoft.Extensions.Options;
using Serving.Runtime.Telemetry;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Hosting;

namespace Serving.Server.Http;

/// <summary>
/// Wraps a GenAI route in a <see cref="GenAiOperation"/>: the span "{operation} {model}" and the
/// semantic-convention metrics, with <c>error.type</c> set to the OpenAI error code the client
/// got. Handlers reach the operation through <c>HttpContext.Features</c> to report tokens.
/// Models not served are tagged <c>unknown</c>, so clients cannot mint label values.
/// </summary>
public sealed class GenAiTelemetryFilter(string operation) : IEndpointFilter
{
    public async ValueTask<object?> InvokeAsync(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        IServiceProvider services = context.HttpContext.RequestServices;
        if (!services.GetRequiredService<IOptions<TelemetryOptions>>().Value.Enabled)
        {
            return await next(context);
        }

        string? requested = context.Arguments.OfType<SamplingRequest>().FirstOrDefault()?.Model;
        using GenAiOperation genAi = services.GetRequiredService<ServingTelemetry>().StartOperation(operation, ModelLabel(services, requested));
        context.HttpContext.Features.Set(genAi);
        try
        {
            object? result = await next(context);
            if (ErrorType(result) is { } error)
            {
                genAi.Fail(error);
            }
            else if (context.HttpContext.RequestAborted.IsCancellationRequested)
            {
                genAi.Fail("cancelled");
            }

            return result;
        }
        catch (Exception e)
        {
            genAi.Fail(e is ApiException api ? api.Code ?? "invalid_request_error" : e.GetType().Name);
            throw;
        }
    }

    /// <summary>The label for <paramref name="model"/>: itself when served, else <c>unknown</c>.</summary>
    public static string ModelLabel(IServiceProvider services, string? model) =>
        model is not null && services.GetRequiredService<ModelCatalog>().Find(model) is not null ? model : "unknown";

    private static string? ErrorType(object? result) => result switch
    {
        IValueHttpResult { Value: OpenAiErrorBody body } => body.Error.Code ?? body.Error.Type,
        QueueFullResult => "queue_full",
        _ => null,
    };
}
