using System.Numerics;
using Serving.Runtime.Text;

namespace Serving.Runtime.Generation.Structured;

/// <summary>
/// The tokens a JSON automaton state allows, over one tokenizer's vocabulary. Token bytes are
/// read once; a byte trie of the text tokens is walked from the state, pruning every branch the
/// automaton refuses, so a structural position visits a few hundred nodes. Inside an unconstrained
/// string almost every token is allowed: there the tokens that are plain text (printable ASCII but
/// the quote and backslash, and complete UTF-8 characters) come from one precomputed bitmask and
/// only the rest are walked. Masks are cached per state (bounded), which is what makes long
/// strings cheap. Thread-safe; one per model.
/// </summary>
public sealed class TokenMasks
{
    private const int CacheEntries = 512;

    private readonly int _vocabSize;
    private readonly Trie _all = new(), _special = new();
    private readonly ulong[] _plainString, _notJsonStart;
    private readonly IReadOnlyList<int> _eosIds;
    private readonly Dictionary<string, ulong[]> _cache = [];
    private readonly Lock _lock = new();

    public TokenMasks(GemmaTokenizer tokenizer, int vocabSize, IReadOnlyList<int> eosIds)
        : this(Enumerable.Range(0, vocabSize).Select(id => id < tokenizer.VocabularySize ? tokenizer.TokenBytes(id) : null).ToArray(), eosIds)
    {
    }

    /// <param name="tokenBytes">Per id, the bytes the token adds to the text; null for tokens JSON output never uses (added and special ones).</param>
    /// <param name="eosIds">End-of-sequence ids, allowed once the value is complete.</param>
    public TokenMasks(byte[]?[] tokenBytes, IReadOnlyList<int> eosIds)
    {
        _vocabSize = tokenBytes.Length;
        _eosIds = eosIds;
        _plainString = new ulong[Words];
        _notJsonStart = new ulong[Words];
        for (int id = 0; id < tokenBytes.Length; id++)
        {
            if (tokenBytes[id] is not { Length: > 0 } bytes)
            {
                _notJsonStart[id >> 6] |= 1UL << id;
                continue;
            }

            if (bytes[0] != (byte)'{')
            {
                _notJsonStart[id >> 6] |= 1UL << id;
            }

            _all.Add(bytes, id);
            if (IsPlainText(bytes))
            {
                _plainString[id >> 6] |= 1UL << id;
            }
            else
            {
                _special.Add(bytes, id);
            }
        }
    }

    public int VocabSize => _vocabSize;

    /// <summary>Words of a mask: one bit per token id.</summary>
    public int Words => (_vocabSize + 63) / 64;

    /// <summary>The tokens allowed after <paramref name="states"/>: a shared, read-only mask (do not write to it).</summary>
    public ulong[] Allowed(IReadOnlyList<JsonFrame> states)
    {
        string key = JsonStates.Key(states);
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out ulong[]? cached))
            {
                return cached;
            }
        }

        ulong[] mask = Compute(states);
        lock (_lock)
        {
            if (_cache.Count >= CacheEntries)
            {
                _cache.Clear();
            }

            _cache[key] = mask;
        }

        return mask;
    }

    public static bool IsAllowed(ulong[] mask, int id) => (mask[id >> 6] & (1UL << id)) != 0;

    /// <summary>
    /// The first token of an output that may be free text or a JSON object (tool_choice auto):
    /// any token that does not begin with <c>{</c>, or one that begins the object validly.
    /// </summary>
    public ulong[] FirstOfTextOrJson(IReadOnlyList<JsonFrame> start)
    {
        string key = "text|" + JsonStates.Key(start);
        lock (_lock)
        {
            if (_cache.TryGetValue(key, out ulong[]? cached))
            {
                return cached;
            }
        }

        ulong[] json = Allowed(start);
        var mask = new ulong[Words];
        for (int i = 0; i < mask.Length; i++)
        {
            mask[i] = json[i] | _notJsonStart[i];
        }

        lock (_lock)
        {
            _cache[key] = mask;
        }

        return mask;
    }

    private ulong[] Compute(IReadOnlyList<JsonFrame> states)
    {
        var mask = new ulong[Words];
        if (states.All(state => state.IsPlainStringBody))
        {
            Array.Copy(_plainString, mask, mask.Length);
            Walk(_special.Root, [.. states], mask);
        }
        else
        {
            Walk(_all.Root, [.. states], mask);
        }

        if (states.Any(state => state.CanEnd))
        {
            foreach (int eos in _eosIds)
            {
                if (eos < _vocabSize)
                {
                    mask[eos >> 6] |= 1UL << eos;
                }
            }
        }

        return mask;
    }

    private static void Walk(Trie.Node node, List<JsonFrame> states, ulong[] mask)
    {
        foreach (var (b, child) in node.Children)
        {
            List<JsonFrame> next = JsonStates.Step(states, b);
            if (next.Count == 0)
            {
                continue;
            }

            foreach (int id in child.Ids)
            {
                mask[id >> 6] |= 1UL << id;
            }

            if (child.Children.Count > 0)
            {
                Walk(child, next, mask);
            }
        }
    }

    /// <summary>Text that leaves an unconstrained string body as it is: printable ASCII but <c>"</c> and <c>\</c>, and whole UTF-8 characters.</summary>
    internal static bool IsPlainText(byte[] bytes)
    {
        for (int i = 0; i < bytes.Length;)
        {
            byte b = bytes[i];
            if (b is >= 0x20 and < 0x80)
            {
                if (b is (byte)'"' or (byte)'\\')
                {
                    return false;
                }

                i++;
                continue;
            }

            if (StringFrame.Utf8Lead(b) is not { } lead || i + lead.Count >= bytes.Length)
            {
                return false;
            }

            if (bytes[i + 1] < lead.Lo || bytes[i + 1] > lead.Hi)
            {
                return false;
            }

            for (int k = 2; k <= lead.Count; k++)
            {
                if (bytes[i + k] is < 0x80 or > 0xBF)
                {
                    return false;
                }
            }

            i += lead.Count + 1;
        }

        return true;
    }

    private sealed class Trie
    {
        public Node Root { get; } = new();

        public void Add(byte[] bytes, int id)
        {
            Node node = Root;
            foreach (byte b in bytes)
            {
                node = node.Child(b);
            }

            node.Ids.Add(id);
        }

        public sealed class Node
        {
            public List<(byte Byte, Node Child)> Children { get; } = [];

            public List<int> Ids { get; } = [];

            public Node Child(byte b)
            {
                foreach (var (existing, child) in Children)
                {
                    if (existing == b)
                    {
                        return child;
                    }
                }

                var node = new Node();
                Children.Add((b, node));
                return node;
            }
        }
    }

    /// <summary>How many tokens a mask allows.</summary>
    public static int Count(ulong[] mask) => mask.Sum(word => BitOperations.PopCount(word));
}
