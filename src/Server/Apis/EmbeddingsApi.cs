using System.Runtime.InteropServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Options;
using Serving.Runtime.Telemetry;
using Serving.Server.Hosting;
using Serving.Server.Http;
using Serving.Server.Retrieval;

namespace Serving.Server.Apis;

/// <summary>
/// <c>POST /v1/embeddings</c>, OpenAI-compatible for text (<c>input</c> a string or an array
/// of strings), plus images as items <c>{"type":"image_url","image_url":{"url":"data:image/...;base64,..."}}</c>
/// (and <c>{"type":"text","text":...}</c>) in the same array. Vectors are L2-normalised;
/// <c>encoding_format</c> <c>float</c> (default) or <c>base64</c> (little-endian float32).
/// </summary>
public static class EmbeddingsApi
{
    public static IEndpointRouteBuilder MapEmbeddingsApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/v1/embeddings", CreateEmbeddings).WithTags("OpenAI")
            .Produces<EmbeddingList>()
            .ProducesOpenAiErrors(400, 404, 413, 415, 503)
            .AddEndpointFilter(new GenAiTelemetryFilter("embeddings"))
            .AddEndpointFilter<ApiExceptionFilter>();
        return app;
    }

    /// <summary>One input: text, or image bytes.</summary>
    private sealed record Input(string? Text, byte[]? Image);

    private static IResult CreateEmbeddings(EmbeddingsRequest body, HttpContext context, ClipEmbedder embedder, IOptions<RetrievalOptions> retrieval)
    {
        string model = body.Model ?? throw ApiException.Invalid("model", "model is required");
        GenAiOperation? genAi = context.Features.Get<GenAiOperation>();
        genAi?.SetModel(GenAiTelemetryFilter.ModelLabel(context.RequestServices, model));
        string format = body.EncodingFormat ?? "float";
        if (format is not ("float" or "base64"))
        {
            throw ApiException.Invalid("encoding_format", "encoding_format must be \"float\" or \"base64\"");
        }

        embedder.Model(model);
        List<Input> inputs = ParseInputs(body.Input, retrieval.Value.MaxItemsPerRequest);
        var images = embedder.DecodeImages(model, [.. inputs.Select((input, i) => (input.Image, Param: $"input[{i}]")).Where(p => p.Image is not null)
            .Select(p => (p.Image!, p.Param))]);
        var texts = inputs.Where(input => input.Text is not null).Select(input => input.Text!).ToList();
        float[][] textVectors = texts.Count > 0 ? embedder.EmbedTexts(model, texts) : [];
        float[][] imageVectors = images.Length > 0 ? embedder.EmbedImages(model, images) : [];
        var clip = embedder.Model(model);
        int tokens = texts.Sum(text => clip.Tokenizer.Encode(text).Length);
        genAi?.Embedded(tokens);

        return TypedResults.Ok(new EmbeddingList("list", Data(inputs, textVectors, imageVectors, format), model, new EmbeddingUsage(tokens, tokens)));
    }

    /// <summary>One entry per input, in request order (texts and images were embedded in two batches).</summary>
    private static EmbeddingData[] Data(List<Input> inputs, float[][] textVectors, float[][] imageVectors, string format)
    {
        var data = new EmbeddingData[inputs.Count];
        int nextText = 0, nextImage = 0;
        for (int i = 0; i < inputs.Count; i++)
        {
            float[] vector = inputs[i].Text is not null ? textVectors[nextText++] : imageVectors[nextImage++];
            data[i] = new EmbeddingData("embedding", i, format == "base64" ? Convert.ToBase64String(MemoryMarshal.AsBytes(vector.AsSpan())) : vector);
        }

        return data;
    }

    private static List<Input> ParseInputs(JsonElement? input, int maxItems)
    {
        JsonElement[] items = input switch
        {
            null or { ValueKind: JsonValueKind.Null } => throw ApiException.Invalid("input", "input is required"),
            { ValueKind: JsonValueKind.Array } array => [.. array.EnumerateArray()],
            { } single => [single],
        };
        if (items.Length == 0 || items.Length > maxItems)
        {
            throw ApiException.Invalid("input", $"input must hold 1 to {maxItems} items (got {items.Length})");
        }

        return [.. items.Select((item, i) => ParseInput(item, $"input[{i}]"))];
    }

    private static Input ParseInput(JsonElement item, string param)
    {
        if (item.ValueKind == JsonValueKind.String)
        {
            return Text(item.GetString()!, param);
        }

        if (item.ValueKind != JsonValueKind.Object)
        {
            throw ApiException.Invalid(param, "an input is a string, {\"type\":\"text\",\"text\":...} or {\"type\":\"image_url\",\"image_url\":{\"url\":\"data:image/...;base64,...\"}} (token arrays are not supported)");
        }

        return OptionalString(item, "type", param) switch
        {
            "text" => Text(OptionalString(item, "text", param) ?? "", param),
            "image_url" => new Input(null, Serving.Server.Retrieval.ImageInput.DecodeBase64(ImageUrl(item, param), param)),
            _ => throw ApiException.Invalid(param + ".type", "type must be \"text\" or \"image_url\""),
        };
    }

    private static string ImageUrl(JsonElement part, string param) => part.TryGetProperty("image_url", out JsonElement url) ? url.ValueKind switch
    {
        JsonValueKind.Object => OptionalString(url, "url", param + ".image_url") ?? throw ApiException.Invalid(param + ".image_url.url", "url is required"),
        JsonValueKind.String => url.GetString()!,
        _ => throw ApiException.Invalid(param + ".image_url", "image_url must be {\"url\": \"data:image/...;base64,...\"}"),
    } : throw ApiException.Invalid(param + ".image_url", "image_url must be {\"url\": \"data:image/...;base64,...\"}");

    /// <summary>A string field of a part, null when absent or JSON null; another type is a 400 naming <c>{param}.{name}</c>.</summary>
    private static string? OptionalString(JsonElement part, string name, string param) =>
        !part.TryGetProperty(name, out JsonElement value) || value.ValueKind == JsonValueKind.Null ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : throw ApiException.Invalid($"{param}.{name}", $"{name} must be a string");

    private static Input Text(string text, string param) =>
        string.IsNullOrWhiteSpace(text) ? throw ApiException.Invalid(param, "the text is empty") : new Input(text, null);
}
