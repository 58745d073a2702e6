using System.Runtime.InteropServices;
using System.Text;

namespace Serving.Runtime.Text;

/// <summary>
/// Streams the text of a generated sequence one token at a time, as vLLM's incremental
/// detokenizer does: each step decodes only the window from <c>_prefixOffset</c> (the
/// tokens before the last emitted text, for context) and releases the new text once it no
/// longer ends in U+FFFD, i.e. once byte-fallback tokens have completed a UTF-8 character.
/// The concatenation of every <see cref="Add"/> result and <see cref="Flush"/> equals
/// <see cref="GemmaTokenizer.Decode"/> of all ids for valid UTF-8. Not thread-safe: one per sequence.
/// </summary>
public sealed class IncrementalDetokenizer
{
    // A UTF-8 character spans at most 4 bytes, so with more pending tokens than that the
    // U+FFFD is real (invalid bytes), not a character still arriving: emit it and move on.
    private const int MaxPendingTokens = 4;

    private readonly PieceDecoder _decoder;
    private readonly bool _skipSpecialTokens;
    private readonly List<int> _ids = [];
    private readonly StringBuilder _prefixText = new();
    private readonly StringBuilder _windowText = new();
    private int _prefixOffset;
    private int _readOffset;

    internal IncrementalDetokenizer(PieceDecoder decoder, bool skipSpecialTokens)
    {
        _decoder = decoder;
        _skipSpecialTokens = skipSpecialTokens;
    }

    /// <summary>Adds one token and returns the text it completes (often empty mid-character).</summary>
    public string Add(int id)
    {
        _ids.Add(id);
        return Advance(isFlush: false);
    }

    /// <summary>Returns whatever text is still held back (an incomplete character decodes as U+FFFD).</summary>
    public string Flush() => Advance(isFlush: true);

    private string Advance(bool isFlush)
    {
        ReadOnlySpan<int> ids = CollectionsMarshal.AsSpan(_ids);
        bool atStart = _prefixOffset == 0;
        _prefixText.Clear();
        _decoder.Decode(ids[_prefixOffset.._readOffset], _skipSpecialTokens, atStart, _prefixText);
        _windowText.Clear();
        _decoder.Decode(ids[_prefixOffset..], _skipSpecialTokens, atStart, _windowText);

        bool isIncomplete = _windowText.Length > 0 && _windowText[^1] == '\uFFFD' && ids.Length - _readOffset < MaxPendingTokens;
        if (_windowText.Length <= _prefixText.Length || (isIncomplete && !isFlush))
        {
            return "";
        }

        string text = _windowText.ToString(_prefixText.Length, _windowText.Length - _prefixText.Length);
        _prefixOffset = _readOffset;
        _readOffset = ids.Length;
        return text;
    }
}
