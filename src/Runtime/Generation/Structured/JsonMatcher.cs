using System.Text;

namespace Serving.Runtime.Generation.Structured;

/// <summary>
/// A pushdown automaton over UTF-8 bytes that accepts compact JSON (no whitespace, as OpenAI's
/// structured outputs look) matching a compiled schema. A state is an immutable stack of frames;
/// a byte maps a state to zero (invalid), one or several states (<c>anyOf</c> and prefix-sharing
/// enum values stay ambiguous until a later byte decides). Objects write their listed properties
/// in schema order; optional ones may be left out. Strings take the escapes <c>\" \\ \/ \b \f \n \r \t</c>
/// and well-formed UTF-8; numbers follow JSON's grammar (integers without fraction or exponent).
/// </summary>
public abstract class JsonFrame : IEquatable<JsonFrame>
{
    /// <summary>Frames a state may stack; deeper values are not opened (a recursive schema ends).</summary>
    public const int MaxDepth = 48;

    private string? _key;

    protected JsonFrame(JsonFrame? parent)
    {
        Parent = parent;
        Depth = parent is null ? 0 : parent.Depth + 1;
    }

    public JsonFrame? Parent { get; }

    public int Depth { get; }

    /// <summary>The whole stack, structurally: equal keys, equal states.</summary>
    public string Key => _key ??= Parent is null ? LocalKey : Parent.Key + "|" + LocalKey;

    protected abstract string LocalKey { get; }

    /// <summary>Adds the states after <paramref name="b"/> to <paramref name="next"/> (none when it is not allowed).</summary>
    public abstract void Feed(byte b, List<JsonFrame> next);

    /// <summary>Adds the states after the value this frame's child (tagged <paramref name="tag"/>) just completed.</summary>
    internal abstract void Resume(int tag, List<JsonFrame> next);

    /// <summary>Whether the output may end here (the root value is complete).</summary>
    public virtual bool CanEnd => false;

    /// <summary>Inside an unconstrained string, where any plain text keeps the state as it is.</summary>
    public virtual bool IsPlainStringBody => false;

    public bool Equals(JsonFrame? other) => other is not null && Key == other.Key;

    public override bool Equals(object? obj) => obj is JsonFrame frame && Equals(frame);

    public override int GetHashCode() => Key.GetHashCode(StringComparison.Ordinal);

    /// <summary>The start state for a value of <paramref name="schema"/>.</summary>
    public static JsonFrame Start(SchemaNode schema) => new ValueFrame(schema, new RootFrame());

    internal static int IdOf(SchemaNode schema) => SchemaIds.Of(schema);

    private static class SchemaIds
    {
        private static readonly System.Runtime.CompilerServices.ConditionalWeakTable<SchemaNode, object> Ids = new();
        private static int _next;

        public static int Of(SchemaNode schema) => (int)Ids.GetValue(schema, _ => Interlocked.Increment(ref _next));
    }
}

internal sealed class RootFrame() : JsonFrame(null)
{
    protected override string LocalKey => "R";

    public override void Feed(byte b, List<JsonFrame> next)
    {
    }

    internal override void Resume(int tag, List<JsonFrame> next) => next.Add(new DoneFrame());
}

internal sealed class DoneFrame() : JsonFrame(null)
{
    protected override string LocalKey => "D";

    public override bool CanEnd => true;

    public override void Feed(byte b, List<JsonFrame> next)
    {
    }

    internal override void Resume(int tag, List<JsonFrame> next) => throw new InvalidOperationException("a completed value has no child");
}

/// <summary>A value of <see cref="Schema"/> is expected; its first byte decides its kind.</summary>
internal sealed class ValueFrame(SchemaNode schema, JsonFrame parent) : JsonFrame(parent)
{
    private static readonly byte[] True = "true"u8.ToArray(), False = "false"u8.ToArray(), Null = "null"u8.ToArray();

    public SchemaNode Schema { get; } = schema;

    protected override string LocalKey => "V" + IdOf(Schema);

    public override void Feed(byte b, List<JsonFrame> next)
    {
        if (Schema.AnyOf is { } alternatives)
        {
            foreach (Func<SchemaNode> alternative in alternatives)
            {
                new ValueFrame(alternative(), Parent!).Feed(b, next);
            }

            return;
        }

        if (Schema.Literals is { } literals)
        {
            new LiteralsFrame("E" + IdOf(Schema), [.. literals.Select((bytes, i) => (bytes, i))], 0, Parent!).Feed(b, next);
            return;
        }

        JsonKinds kinds = Schema.Kinds;
        bool canNest = Depth < MaxDepth;
        switch (b)
        {
            case (byte)'{' when kinds.HasFlag(JsonKinds.Object) && canNest:
                next.Add(new ObjectFrame(Schema, ObjectFrame.Phase.Open, 0, Parent!));
                break;
            case (byte)'[' when kinds.HasFlag(JsonKinds.Array) && canNest:
                next.Add(new ArrayFrame(Schema, ArrayFrame.Phase.Open, 0, Parent!));
                break;
            case (byte)'"' when kinds.HasFlag(JsonKinds.String):
                next.Add(StringFrame.Open(Schema.MinLength, Schema.MaxLength, Parent!));
                break;
            case (byte)'-' or (>= (byte)'0' and <= (byte)'9') when (kinds & (JsonKinds.Number | JsonKinds.Integer)) != 0:
                new NumberFrame(!kinds.HasFlag(JsonKinds.Number), NumberFrame.Phase.Start, Parent!).Feed(b, next);
                break;
            case (byte)'t' or (byte)'f' when kinds.HasFlag(JsonKinds.Boolean):
                new LiteralsFrame("B", [(True, 1), (False, 0)], 0, Parent!).Feed(b, next);
                break;
            case (byte)'n' when kinds.HasFlag(JsonKinds.Null):
                new LiteralsFrame("N", [(Null, 0)], 0, Parent!).Feed(b, next);
                break;
        }
    }

    internal override void Resume(int tag, List<JsonFrame> next) => throw new InvalidOperationException("a value frame is replaced by its value, not resumed");
}

/// <summary>Byte strings matched one byte at a time (enum/const values, booleans, null, object keys with their colon).</summary>
internal sealed class LiteralsFrame(string source, (byte[] Bytes, int Tag)[] alive, int position, JsonFrame parent) : JsonFrame(parent)
{
    protected override string LocalKey => $"L{source}@{position}:{string.Join(",", alive.Select(a => a.Tag))}";

    public override void Feed(byte b, List<JsonFrame> next)
    {
        List<(byte[], int)>? longer = null;
        foreach (var (bytes, tag) in alive)
        {
            if (bytes[position] != b)
            {
                continue;
            }

            if (bytes.Length == position + 1)
            {
                Parent!.Resume(tag, next);
            }
            else
            {
                (longer ??= []).Add((bytes, tag));
            }
        }

        if (longer is not null)
        {
            next.Add(new LiteralsFrame(source, [.. longer], position + 1, Parent!));
        }
    }

    internal override void Resume(int tag, List<JsonFrame> next) => throw new InvalidOperationException("a literal has no child");
}

internal sealed class ObjectFrame(SchemaNode schema, ObjectFrame.Phase phase, int nextProperty, JsonFrame parent) : JsonFrame(parent)
{
    public enum Phase
    {
        Open,       // after '{': a key or '}'
        AfterComma, // a key
        Key,        // a key is being read (child)
        Colon,      // free-form: after the key string, ':'
        Value,      // a value is being read (child)
        AfterValue, // ',' or '}'
    }

    protected override string LocalKey => $"O{IdOf(schema)}:{(int)phase}:{nextProperty}";

    /// <summary>No required property is left unwritten from <paramref name="from"/> on.</summary>
    private bool MayClose(int from) => schema.Properties.Skip(from).All(p => !p.Required);

    /// <summary>Properties that may come next: each from <paramref name="from"/> up to and including the first required one.</summary>
    private IEnumerable<int> Candidates(int from)
    {
        for (int i = from; i < schema.Properties.Count; i++)
        {
            yield return i;
            if (schema.Properties[i].Required)
            {
                yield break;
            }
        }
    }

    public override void Feed(byte b, List<JsonFrame> next)
    {
        switch (phase)
        {
            case Phase.Open or Phase.AfterComma:
                if (b == (byte)'}' && phase == Phase.Open && (schema.FreeFormObject || MayClose(nextProperty)))
                {
                    Parent!.Resume(0, next);
                }
                else if (schema.FreeFormObject)
                {
                    if (b == (byte)'"')
                    {
                        next.Add(StringFrame.Open(0, int.MaxValue, With(Phase.Key, nextProperty)));
                    }
                }
                else
                {
                    (byte[], int)[] keys = [.. Candidates(nextProperty).Select(i => (schema.Properties[i].KeyBytes, i))];
                    if (keys.Length > 0)
                    {
                        new LiteralsFrame("K" + IdOf(schema), keys, 0, With(Phase.Key, nextProperty)).Feed(b, next);
                    }
                }

                break;
            case Phase.Colon when b == (byte)':':
                next.Add(new ValueFrame(SchemaNode.AnyValue, With(Phase.Value, nextProperty)));
                break;
            case Phase.AfterValue:
                if (b == (byte)'}' && (schema.FreeFormObject || MayClose(nextProperty)))
                {
                    Parent!.Resume(0, next);
                }
                else if (b == (byte)',' && (schema.FreeFormObject || nextProperty < schema.Properties.Count))
                {
                    next.Add(With(Phase.AfterComma, nextProperty));
                }

                break;
        }
    }

    internal override void Resume(int tag, List<JsonFrame> next)
    {
        switch (phase)
        {
            case Phase.Key when schema.FreeFormObject:
                next.Add(With(Phase.Colon, nextProperty));
                break;
            case Phase.Key:
                next.Add(new ValueFrame(schema.Properties[tag].Schema(), With(Phase.Value, tag + 1)));
                break;
            case Phase.Value:
                next.Add(With(Phase.AfterValue, nextProperty));
                break;
            default:
                throw new InvalidOperationException($"an object in phase {phase} has no child");
        }
    }

    private ObjectFrame With(Phase newPhase, int property) => new(schema, newPhase, property, Parent!);
}

internal sealed class ArrayFrame(SchemaNode schema, ArrayFrame.Phase phase, int count, JsonFrame parent) : JsonFrame(parent)
{
    public enum Phase
    {
        Open,       // after '[': a value or ']'
        Value,      // an item is being read (child)
        AfterValue, // ',' or ']'
    }

    private SchemaNode Items => schema.Items?.Invoke() ?? SchemaNode.AnyValue;

    protected override string LocalKey => $"A{IdOf(schema)}:{(int)phase}:{Math.Min(count, CountThatMatters)}";

    /// <summary>Counts past both bounds behave alike; keep them equal so states (and cached masks) repeat.</summary>
    private int CountThatMatters => schema.MaxItems == int.MaxValue ? schema.MinItems : schema.MaxItems;

    public override void Feed(byte b, List<JsonFrame> next)
    {
        switch (phase)
        {
            case Phase.Open:
                if (b == (byte)']')
                {
                    if (schema.MinItems == 0)
                    {
                        Parent!.Resume(0, next);
                    }
                }
                else if (schema.MaxItems > 0)
                {
                    new ValueFrame(Items, new ArrayFrame(schema, Phase.Value, count, Parent!)).Feed(b, next);
                }

                break;
            case Phase.AfterValue:
                if (b == (byte)']' && count >= schema.MinItems)
                {
                    Parent!.Resume(0, next);
                }
                else if (b == (byte)',' && count < schema.MaxItems)
                {
                    next.Add(new ValueFrame(Items, new ArrayFrame(schema, Phase.Value, count, Parent!)));
                }

                break;
        }
    }

    internal override void Resume(int tag, List<JsonFrame> next) =>
        next.Add(new ArrayFrame(schema, Phase.AfterValue, Math.Min(count + 1, CountThatMatters + 1), Parent!));
}

internal sealed class StringFrame : JsonFrame
{
    private enum Phase
    {
        Text,
        Escape,
        Utf8,
    }

    private readonly int _min, _max, _length, _pending;
    private readonly byte _lo, _hi;
    private readonly Phase _phase;

    private StringFrame(int min, int max, int length, Phase phase, int pending, byte lo, byte hi, JsonFrame parent)
        : base(parent)
    {
        (_min, _max, _length, _phase, _pending, _lo, _hi) = (min, max, length, phase, pending, lo, hi);
    }

    public static StringFrame Open(int min, int max, JsonFrame parent) => new(min, max, 0, Phase.Text, 0, 0, 0, parent);

    private bool Unconstrained => _min == 0 && _max == int.MaxValue;

    public override bool IsPlainStringBody => _phase == Phase.Text && Unconstrained;

    protected override string LocalKey => $"S{_min},{_max},{_length},{(int)_phase},{_pending},{_lo},{_hi}";

    public override void Feed(byte b, List<JsonFrame> next)
    {
        switch (_phase)
        {
            case Phase.Text:
                if (b == (byte)'"')
                {
                    if (_length >= _min)
                    {
                        Parent!.Resume(0, next);
                    }
                }
                else if (_length < _max)
                {
                    if (b == (byte)'\\')
                    {
                        next.Add(With(_length, Phase.Escape, 0, 0, 0));
                    }
                    else if (b is >= 0x20 and < 0x80)
                    {
                        next.Add(With(_length + 1, Phase.Text, 0, 0, 0));
                    }
                    else if (Utf8Lead(b) is { } lead)
                    {
                        next.Add(With(_length + 1, Phase.Utf8, lead.Count, lead.Lo, lead.Hi));
                    }
                }

                break;
            case Phase.Escape:
                if (b is (byte)'"' or (byte)'\\' or (byte)'/' or (byte)'b' or (byte)'f' or (byte)'n' or (byte)'r' or (byte)'t')
                {
                    next.Add(With(_length + 1, Phase.Text, 0, 0, 0));
                }

                break;
            case Phase.Utf8:
                if (b >= _lo && b <= _hi)
                {
                    next.Add(_pending == 1 ? With(_length, Phase.Text, 0, 0, 0) : With(_length, Phase.Utf8, _pending - 1, 0x80, 0xBF));
                }

                break;
        }
    }

    /// <summary>A multi-byte lead: how many continuation bytes follow and the range of the first (no overlongs, no surrogates, ≤ U+10FFFF).</summary>
    internal static (int Count, byte Lo, byte Hi)? Utf8Lead(byte b) => b switch
    {
        >= 0xC2 and <= 0xDF => (1, 0x80, 0xBF),
        0xE0 => (2, 0xA0, 0xBF),
        (>= 0xE1 and <= 0xEC) or 0xEE or 0xEF => (2, 0x80, 0xBF),
        0xED => (2, 0x80, 0x9F),
        0xF0 => (3, 0x90, 0xBF),
        >= 0xF1 and <= 0xF3 => (3, 0x80, 0xBF),
        0xF4 => (3, 0x80, 0x8F),
        _ => null,
    };

    // Unconstrained strings do not count (keeps their states equal, so masks are cached).
    private StringFrame With(int length, Phase phase, int pending, byte lo, byte hi) =>
        new(_min, _max, Unconstrained ? 0 : length, phase, pending, lo, hi, Parent!);

    internal override void Resume(int tag, List<JsonFrame> next) => throw new InvalidOperationException("a string has no child");
}

internal sealed class NumberFrame(bool integerOnly, NumberFrame.Phase phase, JsonFrame parent) : JsonFrame(parent)
{
    public enum Phase
    {
        Start,
        Minus,
        Zero,
        Int,
        Dot,
        Fraction,
        E,
        ExponentSign,
        Exponent,
    }

    private bool Accepting => phase is Phase.Zero or Phase.Int or Phase.Fraction or Phase.Exponent;

    protected override string LocalKey => $"N{(integerOnly ? 1 : 0)}{(int)phase}";

    public override bool CanEnd
    {
        get
        {
            if (!Accepting)
            {
                return false;
            }

            var after = new List<JsonFrame>();
            Parent!.Resume(0, after);
            return after.Any(frame => frame.CanEnd);
        }
    }

    public override void Feed(byte b, List<JsonFrame> next)
    {
        bool digit = b is >= (byte)'0' and <= (byte)'9';
        Phase? to = (phase, b) switch
        {
            (Phase.Start, (byte)'-') => Phase.Minus,
            (Phase.Start or Phase.Minus, (byte)'0') => Phase.Zero,
            (Phase.Start or Phase.Minus, _) when digit => Phase.Int,
            (Phase.Int, _) when digit => Phase.Int,
            (Phase.Zero or Phase.Int, (byte)'.') when !integerOnly => Phase.Dot,
            (Phase.Dot or Phase.Fraction, _) when digit => Phase.Fraction,
            (Phase.Zero or Phase.Int or Phase.Fraction, (byte)'e' or (byte)'E') when !integerOnly => Phase.E,
            (Phase.E, (byte)'+' or (byte)'-') => Phase.ExponentSign,
            (Phase.E or Phase.ExponentSign or Phase.Exponent, _) when digit => Phase.Exponent,
            _ => null,
        };
        if (to is { } known)
        {
            next.Add(new NumberFrame(integerOnly, known, Parent!));
            return;
        }

        if (Accepting)
        {
            // The number ended before this byte: the parent reads it.
            var after = new List<JsonFrame>();
            Parent!.Resume(0, after);
            foreach (JsonFrame frame in after)
            {
                frame.Feed(b, next);
            }
        }
    }

    internal override void Resume(int tag, List<JsonFrame> next) => throw new InvalidOperationException("a number has no child");
}

/// <summary>Helpers over sets of states (the automaton is nondeterministic where anyOf or enum prefixes are).</summary>
public static class JsonStates
{
    /// <summary>The states after <paramref name="bytes"/>, duplicates removed; empty when the bytes are not allowed.</summary>
    public static List<JsonFrame> Advance(IReadOnlyList<JsonFrame> states, ReadOnlySpan<byte> bytes)
    {
        List<JsonFrame> current = [.. states];
        foreach (byte b in bytes)
        {
            current = Step(current, b);
            if (current.Count == 0)
            {
                break;
            }
        }

        return current;
    }

    public static List<JsonFrame> Step(IReadOnlyList<JsonFrame> states, byte b)
    {
        var next = new List<JsonFrame>(2);
        foreach (JsonFrame state in states)
        {
            state.Feed(b, next);
        }

        return next.Count > 1 ? [.. next.Distinct()] : next;
    }

    public static string Key(IReadOnlyList<JsonFrame> states) =>
        states.Count == 1 ? states[0].Key : string.Join("‖", states.Select(s => s.Key).Order(StringComparer.Ordinal));

    /// <summary>Whether <paramref name="text"/> (UTF-8) is a complete value for <paramref name="schema"/> under this automaton.</summary>
    public static bool Accepts(SchemaNode schema, string text) =>
        Advance([JsonFrame.Start(schema)], Encoding.UTF8.GetBytes(text)).Any(state => state.CanEnd);
}
