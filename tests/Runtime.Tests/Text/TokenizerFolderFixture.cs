using Serving.Runtime.Text;

namespace Serving.Runtime.Tests.Text;

/// <summary>One generated 1,024-piece Gemma tokenizer folder, shared by a test class.</summary>
public sealed class TokenizerFolderFixture : IDisposable
{
    public const int VocabSize = 1024;

    public TokenizerFolderFixture()
    {
        Folder = Path.Combine(Path.GetTempPath(), "serving-text-" + Guid.NewGuid().ToString("N"));
        GemmaTokenizerWriter.Write(Folder, VocabSize);
        Tokenizer = GemmaTokenizer.Load(Folder);
    }

    public string Folder { get; }
    public GemmaTokenizer Tokenizer { get; }

    public void Dispose() => Directory.Delete(Folder, recursive: true);
}

internal static class TrickyText
{
    public static readonly string[] Strings =
    [
        "Hello, world!",
        "The quick brown fox jumps over the lazy dog.",
        "café naïve résumé Ångström façade",
        "Price: €100, or £85 — “quoted” it’s fine…",
        "emoji 😀 and 👍🏽 and 👨‍👩‍👧 family",
        "日本語のテキスト、中文文本 및 한국어",
        "multiple   spaces    here",
        "  leading and trailing  ",
        " ",
        "line one\nline two\n\n\nline five\r\n",
        "tab\tseparated\tvalues\t",
        "<start_of_turn>user\nHi there<end_of_turn>\n<start_of_turn>model\n",
        "text with <start_of_turn> inside and <bos> and <unused3> too",
        "a<b>c <start_of_turn <end_of_turn>> <0x41>",
        "digits 1234567890 and 3.14159",
        "ﬁ ligature, Zero\u200Bwidth, e\u0301 combining",
        "Ω≈ç√∫˜µ≤≥÷ ¡™£¢∞§¶•ªº",
        "",
    ];

    public const string TwoHundredWords =
        "Serving small language models well is mostly a matter of bookkeeping. A request arrives, " +
        "its prompt is tokenized, and the scheduler decides whether there is room in the cache for " +
        "another sequence. If there is, the prompt is prefilled in one large step; afterwards the " +
        "model produces one token at a time, and every token must be turned back into text before " +
        "the client sees it. That last part sounds trivial, yet it hides several traps. Some tokens " +
        "are only fragments of a character: an accented letter, a Chinese ideograph or an emoji may " +
        "be split across two, three or four byte tokens, and printing the first of them alone would " +
        "show a replacement character. Other tokens carry a leading space that belongs to the word " +
        "they begin. Special tokens such as the end of a turn should usually stay hidden. A careful " +
        "server therefore keeps a short window of recent tokens, decodes only that window, and " +
        "releases text once it is complete. The same care applies to prompts: chat messages are " +
        "rendered with the model's template, the beginning-of-sequence token appears exactly once, " +
        "and the roles alternate between the user and the model. None of this is glamorous, but " +
        "all of it is visible when it goes wrong, and users notice quickly when it does.";
}
