namespace Serving.Runtime.Generation.Structured;

/// <summary>
/// One sequence's place in its JSON automaton: the mask of the tokens that keep the output valid
/// (<see cref="Allowed"/>), and <see cref="Accept"/> for the token sampled. End of sequence is in
/// the mask only once the value is complete; after that it is the only token left.
/// </summary>
public sealed class JsonConstraint(TokenMasks masks, SchemaNode schema, Func<int, byte[]?> tokenBytes)
{
    private List<JsonFrame> _states = [JsonFrame.Start(schema)];

    /// <summary>Whether the output so far is a complete value (end of sequence allowed).</summary>
    public bool IsComplete => _states.Any(state => state.CanEnd);

    /// <summary>The tokens allowed next (shared, read-only).</summary>
    public ulong[] Allowed() => masks.Allowed(_states);

    /// <summary>Moves past <paramref name="token"/>; end-of-sequence and other non-text tokens leave the state as it is.</summary>
    /// <exception cref="InvalidOperationException">The token was not allowed (the sampler did not apply the mask).</exception>
    public void Accept(int token)
    {
        if (tokenBytes(token) is not { Length: > 0 } bytes)
        {
            return;
        }

        List<JsonFrame> next = JsonStates.Advance(_states, bytes);
        _states = next.Count > 0 ? next : throw new InvalidOperationException($"token {token} breaks the JSON constraint");
    }
}
