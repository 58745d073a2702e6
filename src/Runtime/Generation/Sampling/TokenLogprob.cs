namespace Serving.Runtime.Generation.Sampling;

/// <summary>A token and its log-probability under the model's raw (unpenalized, unscaled) distribution.</summary>
public readonly record struct TokenLogprob(int TokenId, float Logprob);
