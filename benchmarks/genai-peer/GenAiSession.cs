using System.Diagnostics;
using System.Text.Json.Nodes;
using Microsoft.ML.OnnxRuntimeGenAI;

namespace Serving.GenAiPeer;

/// <summary>One greedy generation: the new tokens, the prefill's time (to the first token) and the decode rate after it.</summary>
public sealed record GreedyRun(int[] TokenIds, double PrefillMs, double DecodeTokensPerSecond);

/// <summary>
/// An ONNX Runtime GenAI model opened from one of our folders (its genai_config.json), driven
/// greedily: <c>do_sample</c> false, one sequence. GenAI stops at any of <c>model.eos_token_id</c>
/// and refuses ids outside [0, vocab_size) there, so a run can end early, after an end token.
/// Also compiled into tests/Compat.Tests.
/// </summary>
public sealed class GenAiSession : IDisposable
{
    private readonly Model _model;

    public double LoadMs { get; }

    private GenAiSession(Model model, double loadMs) => (_model, LoadMs) = (model, loadMs);

    /// <summary>
    /// Loads <paramref name="folder"/>. <paramref name="onnxFile"/> (relative, e.g. onnx/model_q4.onnx)
    /// replaces genai_config.json's <c>model.decoder.filename</c> through GenAI's config overlay, as a
    /// GenAI user picks one of our quantized variants; null keeps the file the config names.
    /// </summary>
    public static GenAiSession Open(string folder, string? onnxFile = null)
    {
        var clock = Stopwatch.StartNew();
        using var config = new Config(folder);
        if (onnxFile is not null)
        {
            config.Overlay(new JsonObject { ["model"] = new JsonObject { ["decoder"] = new JsonObject { ["filename"] = onnxFile } } }.ToJsonString());
        }

        var model = new Model(config);
        return new GenAiSession(model, clock.Elapsed.TotalMilliseconds);
    }

    /// <summary>
    /// <paramref name="newTokens"/> greedy tokens after <paramref name="prompt"/>. GenAI's
    /// AppendTokens runs the prompt; the first GenerateNextToken only picks from those logits,
    /// each later one runs the previous token first: prefill is both, decode the rest.
    /// </summary>
    public GreedyRun Greedy(ReadOnlySpan<int> prompt, int newTokens)
    {
        using var parameters = new GeneratorParams(_model);
        parameters.SetSearchOption("max_length", prompt.Length + newTokens);
        parameters.SetSearchOption("do_sample", false);
        using var generator = new Generator(_model, parameters);
        var clock = Stopwatch.StartNew();
        generator.AppendTokens(prompt);
        generator.GenerateNextToken();
        double prefillMs = clock.Elapsed.TotalMilliseconds;
        clock.Restart();
        while (!generator.IsDone())
        {
            generator.GenerateNextToken();
        }

        double decodeSeconds = clock.Elapsed.TotalSeconds;
        int[] tokens = generator.GetSequence(0)[prompt.Length..].ToArray();
        return new GreedyRun(tokens, prefillMs, tokens.Length > 1 ? (tokens.Length - 1) / decodeSeconds : 0);
    }

    public void Dispose() => _model.Dispose();
}
