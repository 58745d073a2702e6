using System.Diagnostics;
using Serving.Runtime.Generation;

namespace Serving.Runtime.Telemetry;

/// <summary>
/// One API call as the GenAI semantic conventions see it: the span "{operation} {model}" (the
/// current activity while the handler runs, so the engine's phase spans become its children)
/// and, at its end, <c>gen_ai.server.request.duration</c> (with <c>error.type</c> when it
/// failed), time to first token, time per output token and token usage. The handler reports
/// each generation event through <see cref="OnEvent"/>, which allocates nothing.
/// </summary>
public sealed class GenAiOperation : IDisposable
{
    private readonly ServingTelemetry _telemetry;
    private readonly KeyValuePair<string, object?> _operation;
    private readonly long _start = Stopwatch.GetTimestamp();
    private KeyValuePair<string, object?> _model;
    private long _firstToken, _lastToken;
    private int _inputTokens, _outputTokens, _longestChoice;
    private string? _errorType;
    private bool _isDone;

    internal GenAiOperation(ServingTelemetry telemetry, string operation, string model)
    {
        _telemetry = telemetry;
        _operation = new(TelemetryNames.OperationName, operation);
        _model = ServingTelemetry.Model(model);
        Activity = telemetry.ActivitySource.StartActivity($"{operation} {model}", ActivityKind.Internal);
        Activity?.SetTag(TelemetryNames.OperationName, operation).SetTag(TelemetryNames.RequestModel, model);
    }

    /// <summary>The request span, or null when no listener samples it.</summary>
    public Activity? Activity { get; }

    public string Operation => (string)_operation.Value!;

    /// <summary>Sets the model once the handler has read it from the body (embeddings read their own JSON).</summary>
    public void SetModel(string model)
    {
        _model = ServingTelemetry.Model(model);
        if (Activity is { } activity)
        {
            activity.DisplayName = $"{Operation} {model}";
            activity.SetTag(TelemetryNames.RequestModel, model);
        }
    }

    /// <summary>The request was queued: its prompt tokens (each prompt once, whatever n is) and sampling settings.</summary>
    public void Submitted(int inputTokens, int choices, int? maxTokens, double? temperature, double? topP)
    {
        _inputTokens = inputTokens;
        Activity?.SetTag("gen_ai.request.choice.count", choices).SetTag("gen_ai.request.max_tokens", maxTokens)
            .SetTag("gen_ai.request.temperature", temperature).SetTag("gen_ai.request.top_p", topP);
    }

    /// <summary>Embeddings: the tokens read (images count none).</summary>
    public void Embedded(int inputTokens) => _inputTokens = inputTokens;

    /// <summary>Every event the handler reads from the engine (per token: no allocation).</summary>
    public void OnEvent(in GenerationEvent e)
    {
        if (e.HasToken)
        {
            _lastToken = Stopwatch.GetTimestamp();
            _firstToken = _firstToken == 0 ? _lastToken : _firstToken;
        }

        if (e.Finish is not null)
        {
            _outputTokens += e.Usage.CompletionTokens;
            _longestChoice = Math.Max(_longestChoice, e.Usage.CompletionTokens);
            if (e.Finish == FinishReason.Error)
            {
                _errorType ??= "engine_error";
            }
        }
    }

    /// <summary>The request failed; <paramref name="errorType"/> is the OpenAI error code (or type) the client saw.</summary>
    public void Fail(string errorType) => _errorType ??= errorType;

    public bool HasFailed => _errorType is not null;

    /// <summary>Records the metrics and ends the span (once).</summary>
    public void Dispose()
    {
        if (_isDone)
        {
            return;
        }

        _isDone = true;
        double seconds = Stopwatch.GetElapsedTime(_start).TotalSeconds;
        if (_errorType is { } error)
        {
            _telemetry.RequestDuration.Record(seconds, _operation, _model, new(TelemetryNames.ErrorType, error));
            Activity?.SetTag(TelemetryNames.ErrorType, error).SetStatus(ActivityStatusCode.Error, error);
        }
        else
        {
            RecordSuccess(seconds);
        }

        Activity?.SetTag("gen_ai.usage.input_tokens", _inputTokens).SetTag("gen_ai.usage.output_tokens", _outputTokens);
        Activity?.Dispose();
    }

    private void RecordSuccess(double seconds)
    {
        _telemetry.RequestDuration.Record(seconds, _operation, _model);
        _telemetry.TokenUsage.Record(_inputTokens, _operation, _model, new(TelemetryNames.TokenType, "input"));
        if (_firstToken == 0)
        {
            return;
        }

        _telemetry.TokenUsage.Record(_outputTokens, _operation, _model, new(TelemetryNames.TokenType, "output"));
        _telemetry.TimeToFirstToken.Record(Stopwatch.GetElapsedTime(_start, _firstToken).TotalSeconds, _operation, _model);
        if (_longestChoice > 1)
        {
            // With n > 1 choices decoding side by side, the longest one sets the pace.
            _telemetry.TimePerOutputToken.Record(Stopwatch.GetElapsedTime(_firstToken, _lastToken).TotalSeconds / (_longestChoice - 1), _operation, _model);
        }
    }
}
