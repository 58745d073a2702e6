using System.Text.Json;
using Microsoft.Extensions.Options;
using Serving.Runtime.Generation;
using Serving.Runtime.Telemetry;
using Serving.Server.Hosting;
using Serving.Server.Http;

namespace Serving.Server.Apis.OpenAi;

/// <summary>What chat and text completions share: finding the model, submitting, timeouts, SSE.</summary>
public sealed class GenerationEndpoint(DecoderHost decoders, ModelCatalog catalog, IOptions<ServingOptions> options,
    IOptions<Microsoft.AspNetCore.Http.Json.JsonOptions> json, ShutdownDrain drain)
{
    /// <summary>Seconds a client should wait after a 429: about one short generation.</summary>
    private const int RetryAfterSeconds = 1;

    public JsonSerializerOptions Json => json.Value.SerializerOptions;

    public (Engine? Engine, IResult? Error) FindEngine(string? model)
    {
        if (string.IsNullOrEmpty(model))
        {
            return (null, OpenAiErrors.InvalidParameter("model", "model is required; GET /v1/models lists the models served."));
        }

        if (!decoders.IsReady)
        {
            return (null, OpenAiErrors.Create(StatusCodes.Status503ServiceUnavailable, "The models are still loading; retry shortly.", null, "not_ready"));
        }

        if (decoders.Find(model) is { } engine)
        {
            return (engine, null);
        }

        return catalog.Find(model) is { } entry
            ? (null, OpenAiErrors.InvalidParameter("model", $"The model '{model}' is a {entry.ModelType} model; it does not generate text."))
            : (null, OpenAiErrors.ModelNotFound(model));
    }

    public const string ContextLengthCode = "context_length_exceeded";

    /// <summary>
    /// Encodes <paramref name="text"/> unless its UTF-8 length alone shows it cannot fit the model's context: then a 400
    /// naming <paramref name="param"/>, answered without encoding megabytes (about 1.5 s of CPU per MB).
    /// </summary>
    public static (int[]? Ids, IResult? Error) Encode(Engine engine, string text, string param, bool addSpecialTokens = true)
    {
        long bytes = System.Text.Encoding.UTF8.GetByteCount(text);
        if (engine.Model.Tokenizer.IsSurelyLongerThan(bytes, engine.ContextLength))
        {
            return (null, OpenAiErrors.Create(StatusCodes.Status400BadRequest,
                $"This model's maximum context length is {engine.ContextLength} tokens; the {param} has {bytes} bytes of text, and no token "
                + $"of its tokenizer stands for more than {engine.Model.Tokenizer.MaxBytesPerToken} bytes, so it cannot fit. Shorten the {param}.",
                param, ContextLengthCode));
        }

        return (engine.Model.Tokenizer.Encode(text, addSpecialTokens), null);
    }

    /// <summary>Validates the sampling fields and queues every (prompt, choice); a 400 or 429 when that fails.</summary>
    public static (GenerationPlan? Plan, IReadOnlyList<GenerationStream>? Streams, IResult? Error) Start(
        Engine engine, SamplingRequest body, IReadOnlyList<int[]> prompts, int? maxTokens, int? topLogprobs,
        Serving.Runtime.Generation.Structured.SchemaNode? toolSchema = null, bool optionalSchema = false)
    {
        var (plan, invalid) = GenerationPlan.Build(body, prompts, engine, maxTokens, topLogprobs, toolSchema, optionalSchema);
        if (plan is null)
        {
            return (null, null, invalid);
        }

        // Queued all or none: more sequences than the queue holds would get 429 on every retry.
        if (plan.Requests.Count > engine.MaxQueueLength)
        {
            return (null, null, OpenAiErrors.InvalidParameter(prompts.Count > 1 ? "prompt" : "n",
                $"The request makes {plan.Requests.Count} sequences ({prompts.Count} prompts × n = {plan.NumChoices}), more than the server's wait queue "
                + $"of {engine.MaxQueueLength} (Serving:MaxQueueLength) can ever hold. Send fewer prompts or choices per call."));
        }

        IReadOnlyList<GenerationStream>? streams = engine.TrySubmit(plan.Requests);
        return streams is null ? (null, null, new QueueFullResult(RetryAfterSeconds)) : (plan, streams, null);
    }

    /// <summary>Reads every choice to its end within the deadline: the results, or the timeout / failure to answer.</summary>
    public async Task<(ChoiceResult[]? Results, IResult? Error)> CollectAsync(HttpContext context, IReadOnlyList<GenerationStream> streams)
    {
        using StreamGuard guard = Guard(context, streams);
        ChoiceResult[] results = await ChoiceCollector.CollectAsync(streams, context.Features.Get<GenAiOperation>(), CancellationToken.None);
        if (guard.IsExpired)
        {
            return (null, OpenAiErrors.Create(StatusCodes.Status503ServiceUnavailable, EndedMessage(guard), null, EndedCode(guard)));
        }

        return Failure(results) is { } failure ? (null, failure) : (results, null);
    }

    public static void CancelAll(IReadOnlyList<GenerationStream> streams)
    {
        foreach (GenerationStream stream in streams)
        {
            stream.Cancel();
        }
    }

    /// <summary>Watches <paramref name="streams"/> for the client leaving, the request timeout, the end of a shutdown's drain, and the handler exiting early.</summary>
    public StreamGuard Guard(HttpContext context, IReadOnlyList<GenerationStream> streams) =>
        new(context.RequestAborted, drain.Expired, TimeSpan.FromSeconds(options.Value.RequestTimeoutSeconds), streams);

    /// <summary>Why the server ended a request early (its timeout, or a shutdown's drain time), for the 503 body or error event.</summary>
    private string EndedMessage(StreamGuard guard) => guard.IsShutdown
        ? $"The server is shutting down; the request was still running after the drain time of {options.Value.ShutdownDrainSeconds} s and was cancelled. Retry on another replica."
        : $"The request ran longer than the server's limit of {options.Value.RequestTimeoutSeconds} s and was cancelled.";

    private static string EndedCode(StreamGuard guard) => guard.IsShutdown ? Http.ShutdownDrainMiddleware.Code : "timeout";

    /// <summary>Mid-stream, a timeout or the end of the drain is an error event (the status line is long gone), then [DONE].</summary>
    private async Task WriteEndedAsync(HttpResponse response, StreamGuard guard, CancellationToken cancellation)
    {
        if (cancellation.IsCancellationRequested)
        {
            return;
        }

        await ServerSentEvents.WriteAsync(response, OpenAiErrors.Body(StatusCodes.Status503ServiceUnavailable, EndedMessage(guard), null, EndedCode(guard)), Json, cancellation);
        await ServerSentEvents.WriteDoneAsync(response, cancellation);
    }

    /// <summary>
    /// The SSE stream both APIs send: each choice's opening chunk, then every event as it comes
    /// (an engine error as an OpenAI error event, cancellations dropped), a timeout error if the
    /// deadline passed, the usage chunk when asked for, and [DONE]. The callbacks write the
    /// API's own chunk shapes; <paramref name="writeEvent"/> may write nothing for an event.
    /// </summary>
    public async Task<IResult> StreamAsync(HttpContext context, IReadOnlyList<GenerationStream> streams, GenerationPlan plan,
        Func<int, CancellationToken, Task> writeStart, Func<int, GenerationEvent, CancellationToken, Task> writeEvent,
        Func<Usage, CancellationToken, Task> writeUsage)
    {
        using StreamGuard guard = Guard(context, streams);
        HttpResponse response = context.Response;
        CancellationToken aborted = context.RequestAborted;
        ServerSentEvents.Start(response);
        GenAiOperation? genAi = context.Features.Get<GenAiOperation>();
        var results = new ChoiceResult[streams.Count];
        for (int i = 0; i < results.Length; i++)
        {
            results[i] = new ChoiceResult(i);
            await writeStart(i, aborted);
        }

        await foreach (var (index, e) in ChoiceCollector.Merge(streams, CancellationToken.None))
        {
            genAi?.OnEvent(e);
            results[index].Add(e);
            if (e.Finish == FinishReason.Error)
            {
                await ServerSentEvents.WriteAsync(response, OpenAiErrors.Body(500, $"Generation failed: {e.Error}", null, "engine_error"), Json, aborted);
            }
            else if (e.Finish != FinishReason.Cancelled)
            {
                await writeEvent(index, e, aborted);
            }
        }

        if (guard.IsExpired)
        {
            genAi?.Fail(aborted.IsCancellationRequested ? "cancelled" : EndedCode(guard));
            await WriteEndedAsync(response, guard, aborted);
            return Results.Empty;
        }

        if (plan.IncludeUsage)
        {
            await writeUsage(UsageOf(results, plan.NumChoices), aborted);
        }

        await ServerSentEvents.WriteDoneAsync(response, aborted);
        return Results.Empty;
    }

    public static string FinishName(FinishReason? finish) => finish == FinishReason.Length ? "length" : "stop";

    public static Usage UsageOf(IReadOnlyList<ChoiceResult> results, int numChoices)
    {
        int prompt = 0, completion = 0;
        for (int i = 0; i < results.Count; i++)
        {
            // The prompt counts once per prompt, not once per choice (OpenAI's accounting for n > 1).
            prompt += i % numChoices == 0 ? results[i].Usage.PromptTokens : 0;
            completion += results[i].Usage.CompletionTokens;
        }

        return new Usage(prompt, completion, prompt + completion, new PromptTokensDetails(results.Count > 0 ? results[0].Usage.CachedTokens : 0));
    }

    /// <summary>The first engine failure among the choices, as a 500 (a server fault, never bad input).</summary>
    public static IResult? Failure(IReadOnlyList<ChoiceResult> results)
    {
        foreach (ChoiceResult result in results)
        {
            if (result.Finish == FinishReason.Error)
            {
                return OpenAiErrors.Create(StatusCodes.Status500InternalServerError, $"Generation failed: {result.Error}", null, "engine_error");
            }
        }

        return null;
    }

    public static long Now() => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    public static string NewId(string prefix) => prefix + Guid.NewGuid().ToString("N")[..24];
}

/// <summary>
/// Cancels a request's streams when the client leaves, the deadline passes or a shutdown's drain time ends, and again
/// when disposed: whatever way the handler exits (an exception from a dead socket included), no sequence keeps its KV
/// memory for a reader that is gone. Cancelling a finished stream is a no-op.
/// </summary>
public sealed class StreamGuard : IDisposable
{
    private readonly CancellationTokenSource _deadline;
    private readonly CancellationToken _shutdown;
    private readonly CancellationTokenRegistration _registration;
    private readonly IReadOnlyList<GenerationStream> _streams;

    public StreamGuard(CancellationToken aborted, CancellationToken shutdown, TimeSpan timeout, IReadOnlyList<GenerationStream> streams)
    {
        _streams = streams;
        _shutdown = shutdown;
        _deadline = CancellationTokenSource.CreateLinkedTokenSource(aborted, shutdown);
        _deadline.CancelAfter(timeout);
        _registration = _deadline.Token.Register(() => GenerationEndpoint.CancelAll(streams));
    }

    /// <summary>The client left, the timeout passed, or the server is shutting down.</summary>
    public bool IsExpired => _deadline.IsCancellationRequested;

    /// <summary>The server's drain time ended while the request ran.</summary>
    public bool IsShutdown => _shutdown.IsCancellationRequested;

    public void Dispose()
    {
        _registration.Dispose();
        GenerationEndpoint.CancelAll(_streams);
        _deadline.Dispose();
    }
}
