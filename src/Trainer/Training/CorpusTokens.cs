using Serving.Runtime.Text;

namespace Serving.Trainer.Training;

/// <summary>Turns a text corpus into one token stream for <see cref="TokenBatcher"/>.</summary>
public static class CorpusTokens
{
    /// <summary>
    /// Encodes line by line (newline included, no BOS/EOS): one verse a line in the KJV, so
    /// lines stay short for the BPE and the model learns where lines end.
    /// </summary>
    public static int[] Encode(GemmaTokenizer tokenizer, string text)
    {
        var ids = new List<int>(text.Length / 3);
        foreach (string line in text.ReplaceLineEndings("\n").Split('\n'))
        {
            if (line.Length > 0)
            {
                ids.AddRange(tokenizer.Encode(line + "\n", addSpecialTokens: false));
            }
        }

        return [.. ids];
    }

    /// <summary>The last <paramref name="fraction"/> of the stream for validation, the rest for training.</summary>
    public static (int[] Train, int[] Validation) SplitTail(int[] tokens, double fraction)
    {
        int validation = (int)(tokens.Length * fraction);
        return (tokens[..^validation], tokens[^validation..]);
    }
}
