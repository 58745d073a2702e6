using System.Globalization;
using System.Text.Json;
using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>
/// What <see cref="GemmaTokenizer"/> takes from <c>tokenizer_config.json</c>, with token
/// contents resolved to ids through the SentencePiece model (falling back to its trainer
/// spec's ids).
/// </summary>
internal sealed record TokenizerConfig(
    bool AddBosToken,
    bool AddEosToken,
    int BosId,
    int EosId,
    int PadId,
    int UnkId,
    int? StartOfTurnId,
    int? EndOfTurnId,
    string? ChatTemplate,
    IReadOnlyDictionary<string, int> AddedTokens,
    IReadOnlySet<int> SpecialIds)
{
    public static TokenizerConfig Parse(string path, byte[] json, ModelProto model)
    {
        try
        {
            using JsonDocument document = JsonDocument.Parse(json);
            JsonElement root = document.RootElement;
            if (root.ValueKind != JsonValueKind.Object)
            {
                throw new InvalidDataException($"'{path}' must hold a JSON object.");
            }

            return FromJson(root, model);
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException or FormatException)
        {
            throw new InvalidDataException($"'{path}' is not a valid tokenizer_config.json: {e.Message}", e);
        }
    }

    private static TokenizerConfig FromJson(JsonElement root, ModelProto model)
    {
        // Every piece SentencePiece would never produce from plain text is an added token.
        var addedTokens = new Dictionary<string, int>(StringComparer.Ordinal);
        for (int id = 0; id < model.Pieces.Count; id++)
        {
            ModelProto.Types.SentencePiece piece = model.Pieces[id];
            if (piece.Type is PieceType.Control or PieceType.Unknown or PieceType.UserDefined)
            {
                addedTokens.TryAdd(piece.Piece, id);
            }
        }

        var specialIds = new HashSet<int>();
        if (root.TryGetProperty("added_tokens_decoder", out JsonElement decoder))
        {
            foreach (JsonProperty entry in decoder.EnumerateObject())
            {
                int id = int.Parse(entry.Name, NumberStyles.None, CultureInfo.InvariantCulture);
                string? content = entry.Value.GetProperty("content").GetString();
                if (id >= model.Pieces.Count || string.IsNullOrEmpty(content))
                {
                    continue;
                }

                addedTokens.TryAdd(content, id);
                if (entry.Value.TryGetProperty("special", out JsonElement special) && special.GetBoolean())
                {
                    specialIds.Add(id);
                }
            }
        }

        TrainerSpec spec = model.TrainerSpec;
        int Resolve(string name, int fallback) =>
            TokenContent(root, name) is { } content && addedTokens.TryGetValue(content, out int id) ? id : fallback;

        return new TokenizerConfig(
            AddBosToken: OptionalBool(root, "add_bos_token", true),
            AddEosToken: OptionalBool(root, "add_eos_token", false),
            BosId: Resolve("bos_token", spec.BosId),
            EosId: Resolve("eos_token", spec.EosId),
            PadId: Resolve("pad_token", spec.PadId),
            UnkId: Resolve("unk_token", spec.UnkId),
            StartOfTurnId: addedTokens.TryGetValue(GemmaVocabulary.StartOfTurnToken, out int start) ? start : null,
            EndOfTurnId: addedTokens.TryGetValue(GemmaVocabulary.EndOfTurnToken, out int end) ? end : null,
            ChatTemplate: ChatTemplateText(root),
            AddedTokens: addedTokens,
            SpecialIds: specialIds);
    }

    private static bool OptionalBool(JsonElement root, string name, bool fallback) =>
        root.TryGetProperty(name, out JsonElement value) && value.ValueKind != JsonValueKind.Null ? value.GetBoolean() : fallback;

    // Special tokens are written either as "<bos>" or as {"content": "<bos>", ...}.
    private static string? TokenContent(JsonElement root, string name) =>
        !root.TryGetProperty(name, out JsonElement value) ? null
        : value.ValueKind == JsonValueKind.String ? value.GetString()
        : value.ValueKind == JsonValueKind.Object ? value.GetProperty("content").GetString()
        : null;

    // A single template string, or (older transformers) a list of {name, template}: take "default".
    private static string? ChatTemplateText(JsonElement root)
    {
        if (!root.TryGetProperty("chat_template", out JsonElement value))
        {
            return null;
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString();
        }

        if (value.ValueKind == JsonValueKind.Array)
        {
            foreach (JsonElement named in value.EnumerateArray())
            {
                if (named.GetProperty("name").GetString() == "default")
                {
                    return named.GetProperty("template").GetString();
                }
            }
        }

        return null;
    }
}
