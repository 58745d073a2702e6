namespace Serving.Server.Http;

/// <summary>OpenAPI metadata the handlers' <see cref="IResult"/> return types cannot carry.</summary>
public static class EndpointMetadata
{
    /// <summary>The error statuses every OpenAI endpoint may answer, with the error body.</summary>
    public static RouteHandlerBuilder ProducesOpenAiErrors(this RouteHandlerBuilder route, params int[] statuses)
    {
        foreach (int status in statuses)
        {
            route.Produces<OpenAiErrorBody>(status);
        }

        return route;
    }
}
