using Serving.Runtime.Text;
using Serving.Server.Apis.OpenAi;
using Serving.Server.Http;

namespace Serving.Server.Apis;

/// <summary>vLLM's <c>POST /tokenize</c> and <c>POST /detokenize</c>, with the model's own tokenizer.</summary>
public static class TokenizeApi
{
    public static IEndpointRouteBuilder MapTokenizeApi(this IEndpointRouteBuilder app)
    {
        app.MapPost("/tokenize", Tokenize).WithTags("Tokenizer").Produces<TokenizeResponse>().ProducesOpenAiErrors(400, 404, 413, 415, 503);
        app.MapPost("/detokenize", Detokenize).WithTags("Tokenizer").Produces<DetokenizeResponse>().ProducesOpenAiErrors(400, 404, 413, 415, 503);
        return app;
    }

    private static IResult Tokenize(TokenizeRequest body, GenerationEndpoint endpoint)
    {
        var (engine, error) = endpoint.FindEngine(body.Model);
        if (engine is null)
        {
            return error!;
        }

        if ((body.Prompt is null) == (body.Messages is null))
        {
            return OpenAiErrors.InvalidParameter("prompt", "Send exactly one of prompt (text) or messages (a chat).");
        }

        if (body.Messages?.Contains(null) == true)
        {
            return OpenAiErrors.InvalidParameter("messages", "messages must be an array of {role, content} objects; an entry is null.");
        }

        int[]? ids;
        IResult? tooLong;
        if (body.Prompt is { } prompt)
        {
            (ids, tooLong) = GenerationEndpoint.Encode(engine, prompt, "prompt", body.AddSpecialTokens ?? true);
        }
        else
        {
            var messages = body.Messages!.Select(m => new ChatMessage(m!.Role ?? "", m.Content?.ValueKind == System.Text.Json.JsonValueKind.String ? m.Content.Value.GetString()! : "")).ToList();
            string rendered;
            try
            {
                rendered = ChatTemplate.Render(messages, addGenerationPrompt: true);
            }
            catch (ArgumentException e)
            {
                return OpenAiErrors.InvalidParameter("messages", e.Message);
            }

            (ids, tooLong) = GenerationEndpoint.Encode(engine, rendered, "messages", addSpecialTokens: false);
        }

        return ids is null ? tooLong! : TypedResults.Ok(new TokenizeResponse(ids, ids.Length, engine.ContextLength));
    }

    private static IResult Detokenize(DetokenizeRequest body, GenerationEndpoint endpoint)
    {
        var (engine, error) = endpoint.FindEngine(body.Model);
        if (engine is null)
        {
            return error!;
        }

        if (body.Tokens is null)
        {
            return OpenAiErrors.InvalidParameter("tokens", "tokens (an array of token ids) is required.");
        }

        foreach (int id in body.Tokens)
        {
            if (id < 0 || id >= engine.Model.Tokenizer.VocabSize)
            {
                return OpenAiErrors.InvalidParameter("tokens", $"Token id {id} is outside the vocabulary (0 to {engine.Model.Tokenizer.VocabSize - 1}).");
            }
        }

        return TypedResults.Ok(new DetokenizeResponse(engine.Model.Tokenizer.Decode(body.Tokens.ToArray())));
    }
}
