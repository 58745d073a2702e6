namespace Serving.Runtime.Generation.Sampling;

/// <summary>
/// How one request picks its tokens. Field names and ranges follow the OpenAI API (and vLLM
/// for the fields OpenAI lacks: top_k, min_p, repetition_penalty); <see cref="Validate"/>
/// reports the first out-of-range field under its OpenAI parameter name.
/// </summary>
public sealed record SamplingParams
{
    /// <summary>Most alternatives OpenAI returns per token in <c>top_logprobs</c>.</summary>
    public const int MaxTopLogprobs = 20;

    /// <summary>0 = greedy (argmax).</summary>
    public double Temperature { get; init; } = 1.0;

    /// <summary>Keep the k most likely tokens; 0 or -1 = off.</summary>
    public int TopK { get; init; }

    /// <summary>Keep the smallest set of most likely tokens whose mass reaches p; in (0, 1], 1 = off.</summary>
    public double TopP { get; init; } = 1.0;

    /// <summary>Drop tokens less likely than min_p × the most likely one; in [0, 1], 0 = off.</summary>
    public double MinP { get; init; }

    /// <summary>Same seed and same logits sequence give the same tokens; null = the engine's seed.</summary>
    public long? Seed { get; init; }

    /// <summary>&gt; 0, 1 = off. HF/vLLM semantics on prompt and generated tokens: logit &gt; 0 → logit / p, else logit × p.</summary>
    public double RepetitionPenalty { get; init; } = 1.0;

    /// <summary>In [-2, 2]. OpenAI semantics on generated tokens only: subtracted once from every token seen.</summary>
    public double PresencePenalty { get; init; }

    /// <summary>In [-2, 2]. OpenAI semantics on generated tokens only: subtracted once per occurrence.</summary>
    public double FrequencyPenalty { get; init; }

    /// <summary>null = no logprobs; 0..20 = the chosen token's logprob plus that many alternatives.</summary>
    public int? TopLogprobs { get; init; }

    /// <summary>Argmax decoding with no penalties.</summary>
    public static SamplingParams Greedy { get; } = new() { Temperature = 0 };

    /// <summary>The first invalid field as (OpenAI param name, message), or null when all are valid.</summary>
    public (string Param, string Message)? Validate()
    {
        if (!(Temperature >= 0) || double.IsPositiveInfinity(Temperature))
        {
            return ("temperature", $"temperature must be a finite number ≥ 0, got {Temperature}");
        }

        if (TopK < -1)
        {
            return ("top_k", $"top_k must be -1 or 0 (off) or ≥ 1, got {TopK}");
        }

        if (!(TopP > 0 && TopP <= 1))
        {
            return ("top_p", $"top_p must be in (0, 1], got {TopP}");
        }

        if (!(MinP >= 0 && MinP <= 1))
        {
            return ("min_p", $"min_p must be in [0, 1], got {MinP}");
        }

        if (!(RepetitionPenalty > 0) || double.IsPositiveInfinity(RepetitionPenalty))
        {
            return ("repetition_penalty", $"repetition_penalty must be a finite number > 0, got {RepetitionPenalty}");
        }

        return ValidatePenalty("presence_penalty", PresencePenalty)
            ?? ValidatePenalty("frequency_penalty", FrequencyPenalty)
            ?? ValidateTopLogprobs();
    }

    private static (string Param, string Message)? ValidatePenalty(string param, double value) =>
        value is >= -2 and <= 2 ? null : (param, $"{param} must be in [-2, 2], got {value}");

    private (string Param, string Message)? ValidateTopLogprobs() =>
        TopLogprobs is null or (>= 0 and <= MaxTopLogprobs)
            ? null
            : ("top_logprobs", $"top_logprobs must be in [0, {MaxTopLogprobs}], got {TopLogprobs}");
}
