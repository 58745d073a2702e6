using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace Serving.Runtime.Text;

/// <summary>
/// Writes the tokenizer files of a CLIP export for a <see cref="ClipVocabulary"/>:
/// <c>vocab.json</c> and <c>merges.txt</c> (the slow tokenizer's), <c>tokenizer.json</c>
/// (Hugging Face tokenizers: NFC, whitespace collapsed, lowercase, the CLIP split, byte-level
/// BPE with <c>&lt;/w&gt;</c>, start/end tokens around every text), <c>tokenizer_config.json</c>
/// and <c>special_tokens_map.json</c>.
/// </summary>
public static class ClipTokenizerWriter
{
    /// <summary>CLIP's context: 77 tokens including the start and end tokens.</summary>
    public const int ModelMaxLength = 77;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Write(string folder, ClipVocabulary vocabulary)
    {
        Directory.CreateDirectory(folder);
        var vocab = new JsonObject();
        for (int id = 0; id < vocabulary.Tokens.Count; id++)
        {
            vocab[vocabulary.Tokens[id]] = id;
        }

        Save(Path.Combine(folder, "vocab.json"), vocab);
        File.WriteAllLines(Path.Combine(folder, "merges.txt"),
            ["#version: 0.2", .. vocabulary.Merges.Select(m => $"{m.Left} {m.Right}")]);
        Save(Path.Combine(folder, "tokenizer.json"), TokenizerJson(vocabulary, vocab));
        Save(Path.Combine(folder, "tokenizer_config.json"), TokenizerConfig(vocabulary));
        Save(Path.Combine(folder, "special_tokens_map.json"), new JsonObject
        {
            ["bos_token"] = ClipVocabulary.StartOfText,
            ["eos_token"] = ClipVocabulary.EndOfText,
            ["pad_token"] = ClipVocabulary.EndOfText,
            ["unk_token"] = ClipVocabulary.EndOfText,
        });
    }

    private static JsonObject TokenizerJson(ClipVocabulary vocabulary, JsonObject vocab) => new()
    {
        ["version"] = "1.0",
        ["truncation"] = null,
        ["padding"] = null,
        ["added_tokens"] = new JsonArray(AddedToken(vocabulary.StartOfTextId, ClipVocabulary.StartOfText), AddedToken(vocabulary.EndOfTextId, ClipVocabulary.EndOfText)),
        ["normalizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["normalizers"] = new JsonArray(
                new JsonObject { ["type"] = "NFC" },
                new JsonObject { ["type"] = "Replace", ["pattern"] = new JsonObject { ["Regex"] = @"\s+" }, ["content"] = " " },
                new JsonObject { ["type"] = "Lowercase" }),
        },
        ["pre_tokenizer"] = new JsonObject
        {
            ["type"] = "Sequence",
            ["pretokenizers"] = new JsonArray(
                new JsonObject { ["type"] = "Split", ["pattern"] = new JsonObject { ["Regex"] = ClipVocabulary.SplitPattern }, ["behavior"] = "Removed", ["invert"] = true },
                new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = false, ["trim_offsets"] = true, ["use_regex"] = false }),
        },
        ["post_processor"] = new JsonObject
        {
            ["type"] = "RobertaProcessing",
            ["sep"] = new JsonArray(ClipVocabulary.EndOfText, vocabulary.EndOfTextId),
            ["cls"] = new JsonArray(ClipVocabulary.StartOfText, vocabulary.StartOfTextId),
            ["trim_offsets"] = false,
            ["add_prefix_space"] = false,
        },
        ["decoder"] = new JsonObject { ["type"] = "ByteLevel", ["add_prefix_space"] = true, ["trim_offsets"] = true, ["use_regex"] = true },
        ["model"] = new JsonObject
        {
            ["type"] = "BPE",
            ["dropout"] = null,
            ["unk_token"] = ClipVocabulary.EndOfText,
            ["continuing_subword_prefix"] = "",
            ["end_of_word_suffix"] = ClipVocabulary.EndOfWord,
            ["fuse_unk"] = false,
            ["byte_fallback"] = false,
            ["vocab"] = vocab.DeepClone(),
            ["merges"] = new JsonArray([.. vocabulary.Merges.Select(m => (JsonNode)new JsonArray(m.Left, m.Right))]),
        },
    };

    private static JsonObject AddedToken(int id, string content) => new()
    {
        ["id"] = id,
        ["content"] = content,
        ["single_word"] = false,
        ["lstrip"] = false,
        ["rstrip"] = false,
        ["normalized"] = true,
        ["special"] = true,
    };

    private static JsonObject TokenizerConfig(ClipVocabulary vocabulary) => new()
    {
        ["add_prefix_space"] = false,
        ["bos_token"] = ClipVocabulary.StartOfText,
        ["clean_up_tokenization_spaces"] = true,
        ["do_lower_case"] = true,
        ["eos_token"] = ClipVocabulary.EndOfText,
        ["errors"] = "replace",
        ["model_max_length"] = ModelMaxLength,
        ["pad_token"] = ClipVocabulary.EndOfText,
        ["tokenizer_class"] = "CLIPTokenizer",
        ["unk_token"] = ClipVocabulary.EndOfText,
        ["added_tokens_decoder"] = new JsonObject
        {
            [vocabulary.StartOfTextId.ToString(System.Globalization.CultureInfo.InvariantCulture)] = AddedToken(vocabulary.StartOfTextId, ClipVocabulary.StartOfText),
            [vocabulary.EndOfTextId.ToString(System.Globalization.CultureInfo.InvariantCulture)] = AddedToken(vocabulary.EndOfTextId, ClipVocabulary.EndOfText),
        },
    };

    private static void Save(string path, JsonObject json) => File.WriteAllText(path, json.ToJsonString(Indented) + "\n");
}
