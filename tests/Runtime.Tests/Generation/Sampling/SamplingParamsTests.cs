using Serving.Runtime.Generation.Sampling;

namespace Serving.Runtime.Tests.Generation.Sampling;

public sealed class SamplingParamsTests
{
    public static TheoryData<SamplingParams, string> InvalidParams() => new()
    {
        { new SamplingParams { Temperature = -0.1 }, "temperature" },
        { new SamplingParams { Temperature = double.NaN }, "temperature" },
        { new SamplingParams { Temperature = double.PositiveInfinity }, "temperature" },
        { new SamplingParams { TopK = -2 }, "top_k" },
        { new SamplingParams { TopP = 0 }, "top_p" },
        { new SamplingParams { TopP = 1.01 }, "top_p" },
        { new SamplingParams { TopP = double.NaN }, "top_p" },
        { new SamplingParams { MinP = 1.5 }, "min_p" },
        { new SamplingParams { MinP = -0.1 }, "min_p" },
        { new SamplingParams { MinP = double.NaN }, "min_p" },
        { new SamplingParams { RepetitionPenalty = 0 }, "repetition_penalty" },
        { new SamplingParams { RepetitionPenalty = -1 }, "repetition_penalty" },
        { new SamplingParams { RepetitionPenalty = double.NaN }, "repetition_penalty" },
        { new SamplingParams { PresencePenalty = 2.5 }, "presence_penalty" },
        { new SamplingParams { PresencePenalty = double.NaN }, "presence_penalty" },
        { new SamplingParams { FrequencyPenalty = -2.01 }, "frequency_penalty" },
        { new SamplingParams { TopLogprobs = 21 }, "top_logprobs" },
        { new SamplingParams { TopLogprobs = -1 }, "top_logprobs" },
    };

    [Theory]
    [MemberData(nameof(InvalidParams))]
    public void Validate_NamesTheInvalidParam(SamplingParams parameters, string param)
    {
        (string Param, string Message)? error = parameters.Validate();

        Assert.NotNull(error);
        Assert.Equal(param, error.Value.Param);
        Assert.Contains(param, error.Value.Message);
        Assert.Throws<ArgumentException>(() => new SequenceSampler(parameters, 4, [], 0));
    }

    [Fact]
    public void Validate_AcceptsDefaultsAndTheEdgesOfEachRange()
    {
        Assert.Null(new SamplingParams().Validate());
        Assert.Null(SamplingParams.Greedy.Validate());
        Assert.Null(new SamplingParams
        {
            Temperature = 0,
            TopK = -1,
            TopP = 1,
            MinP = 1,
            RepetitionPenalty = 0.01,
            PresencePenalty = -2,
            FrequencyPenalty = 2,
            TopLogprobs = 20,
        }.Validate());
        Assert.Null(new SamplingParams { TopK = 0, MinP = 0, TopLogprobs = 0 }.Validate());
    }

    [Fact]
    public void Greedy_IsTemperatureZeroWithEverythingElseOff()
    {
        Assert.Equal(new SamplingParams { Temperature = 0 }, SamplingParams.Greedy);
    }
}
