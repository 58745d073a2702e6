using System.Text.Json.Nodes;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Models;

/// <summary>
/// Special ids from <c>generation_config.json</c> (Gemma 3 lists both
/// <c>&lt;eos&gt;</c> and <c>&lt;end_of_turn&gt;</c>); config.json's ids when the file is absent.
/// The sampling fields are the file's suggestion (Hugging Face's defaults when absent); requests
/// set their own, and genai_config.json's search section copies these.
/// </summary>
public sealed record GenerationDefaults(int BosTokenId, IReadOnlyList<int> EosTokenIds, int PadTokenId)
{
    public bool DoSample { get; init; }

    public int TopK { get; init; } = 50;

    public double TopP { get; init; } = 1.0;

    public double Temperature { get; init; } = 1.0;

    public static GenerationDefaults Read(string folder, Gemma3Config config)
    {
        string path = Path.Combine(folder, "generation_config.json");
        JsonObject? json = DecoderModel.ReadOptionalJson(path);
        if (json is null)
        {
            return new GenerationDefaults(config.BosTokenId, [config.EosTokenId], config.PadTokenId);
        }

        try
        {
            IReadOnlyList<int> eos = json["eos_token_id"] switch
            {
                JsonArray array => array.Select(node => node?.GetValue<int>() ?? throw new FormatException("eos_token_id holds null")).ToArray(),
                JsonValue value => [value.GetValue<int>()],
                _ => [config.EosTokenId],
            };
            var neutral = new GenerationDefaults(0, [], 0);
            return new GenerationDefaults(
                json["bos_token_id"]?.GetValue<int>() ?? config.BosTokenId,
                eos,
                json["pad_token_id"]?.GetValue<int>() ?? config.PadTokenId)
            {
                DoSample = json["do_sample"]?.GetValue<bool>() ?? neutral.DoSample,
                TopK = json["top_k"]?.GetValue<int>() ?? neutral.TopK,
                TopP = json["top_p"]?.GetValue<double>() ?? neutral.TopP,
                Temperature = json["temperature"]?.GetValue<double>() ?? neutral.Temperature,
            };
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ModelLoadException(path, $"a field has the wrong type: {e.Message}", e);
        }
    }
}
