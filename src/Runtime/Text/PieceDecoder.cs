using System.Buffers;
using System.Text;
using Serving.Runtime.Text.SentencePiece;
using PieceType = Serving.Runtime.Text.SentencePiece.ModelProto.Types.SentencePiece.Types.Type;

namespace Serving.Runtime.Text;

/// <summary>
/// Turns ids back into text the way Gemma's Hugging Face decoder does (Replace "▁"→" ",
/// ByteFallback, Fuse): normal pieces with spaces restored, runs of byte pieces decoded as
/// UTF-8 (invalid bytes become U+FFFD), added tokens as their literal text unless skipped.
/// Immutable and thread-safe; shared by <see cref="GemmaTokenizer"/> and every
/// <see cref="IncrementalDetokenizer"/>.
/// </summary>
internal sealed class PieceDecoder
{
    private enum Kind : byte
    {
        Normal,
        Byte,
        Added,
        Special,
    }

    private readonly string[] _texts;
    private readonly Kind[] _kinds;
    private readonly bool _stripFirstSpace;

    /// <param name="model">The SentencePiece model; its piece types decide byte / added / special.</param>
    /// <param name="specialIds">Added tokens that <c>skipSpecialTokens</c> removes, beyond CONTROL and UNKNOWN pieces.</param>
    public PieceDecoder(ModelProto model, IReadOnlySet<int> specialIds)
    {
        int count = model.Pieces.Count;
        _texts = new string[count];
        _kinds = new Kind[count];
        for (int id = 0; id < count; id++)
        {
            ModelProto.Types.SentencePiece piece = model.Pieces[id];
            (_kinds[id], _texts[id]) = piece.Type switch
            {
                PieceType.Byte when TryParseByte(piece.Piece, out byte value) => (Kind.Byte, ((char)value).ToString()),
                PieceType.Control or PieceType.Unknown => (Kind.Special, piece.Piece),
                PieceType.UserDefined or PieceType.Unused => (specialIds.Contains(id) ? Kind.Special : Kind.Added, piece.Piece),
                _ => (specialIds.Contains(id) ? Kind.Special : Kind.Normal, piece.Piece.Replace('\u2581', ' ')),
            };
        }

        // SentencePiece drops the space it added in front of the text when decoding; Gemma
        // adds none (add_dummy_prefix false), so "▁Hi" at the start decodes to " Hi".
        _stripFirstSpace = model.NormalizerSpec?.AddDummyPrefix ?? true;
    }

    public int Count => _texts.Length;

    public bool IsSpecial(int id) => (uint)id < (uint)_kinds.Length && _kinds[id] == Kind.Special;

    /// <summary>
    /// The UTF-8 bytes a normal or byte piece adds to the text in the middle of a sequence; null
    /// for added and special tokens (markers, not text).
    /// </summary>
    public byte[]? TextBytes(int id) => _kinds[id] switch
    {
        Kind.Byte => [(byte)_texts[id][0]],
        Kind.Normal => Encoding.UTF8.GetBytes(_texts[id]),
        _ => null,
    };

    /// <summary>Appends the text of <paramref name="ids"/> to <paramref name="output"/>.</summary>
    /// <param name="atSequenceStart">Whether <paramref name="ids"/> begins the sequence (for the dummy-prefix rule).</param>
    public void Decode(ReadOnlySpan<int> ids, bool skipSpecialTokens, bool atSequenceStart, StringBuilder output)
    {
        byte[]? pooled = null;
        Span<byte> bytes = stackalloc byte[64];
        int numBytes = 0;
        bool isFirstText = atSequenceStart;
        foreach (int id in ids)
        {
            if ((uint)id >= (uint)_kinds.Length)
            {
                throw new ArgumentOutOfRangeException(nameof(ids), id, $"Token id is outside the vocabulary (size {_kinds.Length}).");
            }

            Kind kind = _kinds[id];
            if (kind == Kind.Byte)
            {
                if (numBytes == bytes.Length)
                {
                    bytes = Grow(bytes, ref pooled);
                }

                bytes[numBytes++] = (byte)_texts[id][0];
                continue;
            }

            FlushBytes(bytes[..numBytes], output, ref isFirstText);
            numBytes = 0;
            if (kind == Kind.Special && skipSpecialTokens)
            {
                continue;
            }

            string text = _texts[id];
            bool stripSpace = isFirstText && _stripFirstSpace && kind == Kind.Normal && text.StartsWith(' ');
            output.Append(text, stripSpace ? 1 : 0, text.Length - (stripSpace ? 1 : 0));
            isFirstText &= text.Length == 0;
        }

        FlushBytes(bytes[..numBytes], output, ref isFirstText);
        if (pooled is not null)
        {
            ArrayPool<byte>.Shared.Return(pooled);
        }
    }

    private static void FlushBytes(ReadOnlySpan<byte> bytes, StringBuilder output, ref bool isFirstText)
    {
        if (bytes.IsEmpty)
        {
            return;
        }

        Span<char> chars = stackalloc char[256];
        char[]? pooled = null;
        int maxChars = Encoding.UTF8.GetMaxCharCount(bytes.Length);
        if (maxChars > chars.Length)
        {
            pooled = ArrayPool<char>.Shared.Rent(maxChars);
            chars = pooled;
        }

        int numChars = Encoding.UTF8.GetChars(bytes, chars);
        output.Append(chars[..numChars]);
        isFirstText = false;
        if (pooled is not null)
        {
            ArrayPool<char>.Shared.Return(pooled);
        }
    }

    private static Span<byte> Grow(Span<byte> bytes, ref byte[]? pooled)
    {
        byte[] larger = ArrayPool<byte>.Shared.Rent(bytes.Length * 2);
        bytes.CopyTo(larger);
        if (pooled is not null)
        {
            ArrayPool<byte>.Shared.Return(pooled);
        }

        pooled = larger;
        return larger;
    }

    // Byte pieces are spelled "<0xAB>" in every SentencePiece model.
    private static bool TryParseByte(string piece, out byte value)
    {
        value = 0;
        return piece.Length == 6 && piece.StartsWith("<0x", StringComparison.Ordinal) && piece[5] == '>' &&
            byte.TryParse(piece.AsSpan(3, 2), System.Globalization.NumberStyles.HexNumber, null, out value);
    }
}
