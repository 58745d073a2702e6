namespace Serving.Runtime.Generation.Structured;

/// <summary>
/// One sequence's place in its JSON automaton: the mask of the tokens that keep the output valid
/// (<see cref="Allowed"/>), and <see cref="Accept"/> for the token sampled. End of sequence is in
/// the mask only once the value is complete; after that it is the only token left.
/// </summary>
public sealed class JsonConstraint(TokenMasks masks, SchemaNode schema, Func<int, byte[]?> tokenBytes, bool optional = false)
{
    private List<JsonFrame> _states = [JsonFrame.Start(schema)];

    /// <summary>Optional mode (tool_choice auto): until the first token, text or JSON; then JSON if it began with <c>{</c>, else free text.</summary>
    private bool _undecided = optional;
    private bool _free;

    /// <summary>Whether the output is free text (an optional constraint whose first token was not JSON): no mask applies.</summary>
    public bool IsFree => _free;

    /// <summary>Whether the output so far is a complete value (end of sequence allowed).</summary>
    public bool IsComplete => _states.Any(state => state.CanEnd);

    /// <summary>The tokens allowed next (shared, read-only); null when the output has become free text.</summary>
    public ulong[]? Allowed() => _free ? null : _undecided ? masks.FirstOfTextOrJson(_states) : masks.Allowed(_states);

    /// <summary>Moves past <paramref name="token"/>; end-of-sequence and other non-text tokens leave the state as it is.</summary>
    /// <exception cref="InvalidOperationException">The token was not allowed (the sampler did not apply the mask).</exception>
    public void Accept(int token)
    {
        byte[]? bytes = tokenBytes(token);
        if (_undecided)
        {
            _undecided = false;
            if (bytes is not { Length: > 0 } || bytes[0] != (byte)'{')
            {
                _free = true;
                return;
            }
        }

        if (_free || bytes is not { Length: > 0 })
        {
            return;
        }

        List<JsonFrame> next = JsonStates.Advance(_states, bytes);
        _states = next.Count > 0 ? next : throw new InvalidOperationException($"token {token} breaks the JSON constraint");
    }
}
