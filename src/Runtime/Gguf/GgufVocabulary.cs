using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Runtime.Gguf;

/// <summary>
/// A Hugging Face <c>tokenizer.json</c> (BPE over SentencePiece pieces, byte fallback, "▁" for
/// spaces, no dummy prefix: what <c>serving models create</c> writes) as llama.cpp's
/// SentencePiece tokenizer (<c>tokenizer.ggml.model = "llama"</c>): tokens, scores, token types.
/// </summary>
/// <remarks>
/// llama.cpp's SPM tokenizer merges the adjacent pair whose concatenation has the highest
/// score. tokenizer.json keeps no scores, only merges ranked by the merged piece's score
/// (highest first), so a piece's score is minus the rank of the first merge that makes it;
/// pieces no merge makes (the alphabet) score below every merge, as in our tokenizer.model.
/// </remarks>
public sealed partial class GgufVocabulary
{
    // llama.cpp's llama_token_type values.
    private const int Normal = 1, Unknown = 2, Control = 3, UserDefined = 4, Unused = 5, Byte = 6;

    private readonly string[] _tokens;
    private readonly float[] _scores;
    private readonly int[] _types;
    private readonly bool _addBos;
    private readonly bool _addEos;

    private GgufVocabulary(string[] tokens, float[] scores, int[] types, bool addBos, bool addEos) =>
        (_tokens, _scores, _types, _addBos, _addEos) = (tokens, scores, types, addBos, addEos);

    public static GgufVocabulary Read(string tokenizerJsonPath)
    {
        JsonObject json = JsonNode.Parse(File.ReadAllText(tokenizerJsonPath))!.AsObject();
        JsonObject model = json["model"]!.AsObject();
        if ((string?)model["type"] != "BPE")
        {
            throw new InvalidDataException($"{tokenizerJsonPath}: model type '{model["type"]}', this writer reads BPE (SentencePiece-style) only");
        }

        JsonObject vocab = model["vocab"]!.AsObject();
        var tokens = new string[vocab.Count];
        foreach (var (piece, id) in vocab)
        {
            tokens[(int)id!] = piece;
        }

        float[] scores = Scores(tokens, model["merges"]!.AsArray());
        int[] types = Types(tokens, json["added_tokens"]?.AsArray());
        var (addBos, addEos) = ReadAddFlags(Path.Combine(Path.GetDirectoryName(tokenizerJsonPath)!, "tokenizer_config.json"));
        return new GgufVocabulary(tokens, scores, types, addBos, addEos);
    }

    public void AddTo(GgufWriter gguf, Gemma3Config config)
    {
        gguf.Add("tokenizer.ggml.model", "llama");
        gguf.Add("tokenizer.ggml.tokens", _tokens);
        gguf.Add("tokenizer.ggml.scores", _scores);
        gguf.Add("tokenizer.ggml.token_type", _types);
        gguf.Add("tokenizer.ggml.bos_token_id", (uint)config.BosTokenId);
        gguf.Add("tokenizer.ggml.eos_token_id", (uint)config.EosTokenId);
        gguf.Add("tokenizer.ggml.padding_token_id", (uint)config.PadTokenId);
        int unk = Array.IndexOf(_types, Unknown);
        if (unk >= 0)
        {
            gguf.Add("tokenizer.ggml.unknown_token_id", (uint)unk);
        }

        int endOfTurn = Array.IndexOf(_tokens, "<end_of_turn>");
        if (endOfTurn >= 0)
        {
            gguf.Add("tokenizer.ggml.eot_token_id", (uint)endOfTurn);
        }

        gguf.Add("tokenizer.ggml.add_bos_token", _addBos);
        gguf.Add("tokenizer.ggml.add_eos_token", _addEos);
        gguf.Add("tokenizer.ggml.add_space_prefix", false);
    }

    private static float[] Scores(string[] tokens, JsonArray merges)
    {
        var ids = new Dictionary<string, int>(tokens.Length, StringComparer.Ordinal);
        for (int id = 0; id < tokens.Length; id++)
        {
            ids.TryAdd(tokens[id], id);
        }

        var scores = new float[tokens.Length];
        var scored = new bool[tokens.Length];
        for (int rank = 0; rank < merges.Count; rank++)
        {
            string merged = MergedText(merges[rank]!);
            if (ids.TryGetValue(merged, out int id) && !scored[id])
            {
                scores[id] = -rank;
                scored[id] = true;
            }
        }

        int below = merges.Count;
        for (int id = 0; id < tokens.Length; id++)
        {
            if (!scored[id] && !IsMarkup(tokens[id]))
            {
                scores[id] = -(below++);
            }
        }

        return scores;
    }

    /// <summary>tokenizers ≥ 0.20 writes a merge as ["a", "b"], older ones as "a b".</summary>
    private static string MergedText(JsonNode merge) => merge is JsonArray pair
        ? (string)pair[0]! + (string)pair[1]!
        : ((string)merge!).Replace(" ", "", StringComparison.Ordinal);

    private static int[] Types(string[] tokens, JsonArray? added)
    {
        var types = new int[tokens.Length];
        for (int id = 0; id < tokens.Length; id++)
        {
            types[id] = ByteToken().IsMatch(tokens[id]) ? Byte : UnusedToken().IsMatch(tokens[id]) ? Unused : Normal;
        }

        foreach (JsonNode? entry in added ?? [])
        {
            int id = (int)entry!["id"]!;
            string content = (string)entry["content"]!;
            types[id] = content == "<unk>" ? Unknown : (bool)entry["special"]! ? Control : UserDefined;
        }

        return types;
    }

    private static bool IsMarkup(string token) => token.Length > 2 && token[0] == '<' && token[^1] == '>';

    private static (bool AddBos, bool AddEos) ReadAddFlags(string tokenizerConfigPath)
    {
        if (!File.Exists(tokenizerConfigPath))
        {
            return (true, false);
        }

        JsonObject config = JsonNode.Parse(File.ReadAllText(tokenizerConfigPath))!.AsObject();
        return ((bool?)config["add_bos_token"] ?? true, (bool?)config["add_eos_token"] ?? false);
    }

    [GeneratedRegex("^<0x[0-9A-F]{2}>$")]
    private static partial Regex ByteToken();

    [GeneratedRegex("^<unused[0-9]+>$")]
    private static partial Regex UnusedToken();
}
