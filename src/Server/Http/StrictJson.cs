using System.Text.Json;
using System.Text.Unicode;

namespace Serving.Server.Http;

/// <summary>What is wrong with a JSON text, and where: <c>param</c> is the field's path (<c>items[0].metadata.k</c>).</summary>
public readonly record struct JsonProblem(string? Param, string Message);

/// <summary>
/// One strict pass over a JSON text, before anything binds it. System.Text.Json accepts a key
/// twice (a <c>JsonObject</c> then throws when first read, a 500 on every later filter) and
/// checks a string's UTF-8 and surrogates only when the string is read (an
/// <see cref="InvalidOperationException"/>, a 500 wherever that happens). This pass finds all
/// three, and malformed JSON, with the path of the field at fault.
/// </summary>
public static class StrictJson
{
    /// <summary>An open object (with the keys seen so far) or array (with the index of its current element).</summary>
    private sealed class Frame(bool isArray)
    {
        public bool IsArray { get; } = isArray;

        public int Index { get; set; } = -1;

        public string? Property { get; set; }

        public HashSet<string> Keys { get; } = new(StringComparer.Ordinal);
    }

    /// <summary>Null when <paramref name="json"/> is strict JSON; else the first problem. <paramref name="prefix"/> starts every path.</summary>
    public static JsonProblem? Validate(ReadOnlySpan<byte> json, string? prefix = null)
    {
        var reader = new Utf8JsonReader(json);
        var frames = new List<Frame>();
        try
        {
            while (reader.Read())
            {
                if (Step(ref reader, frames, prefix) is { } problem)
                {
                    return problem;
                }
            }
        }
        catch (JsonException e)
        {
            // Malformed JSON names no field of a body (as before this pass), only the place; a multipart field is named.
            return new JsonProblem(prefix, $"The JSON is not valid (at {Path(frames, prefix) ?? "the top level"}): {e.Message}");
        }

        return null;
    }

    private static JsonProblem? Step(ref Utf8JsonReader reader, List<Frame> frames, string? prefix)
    {
        Frame? open = frames.Count > 0 ? frames[^1] : null;
        switch (reader.TokenType)
        {
            case JsonTokenType.EndObject or JsonTokenType.EndArray:
                frames.RemoveAt(frames.Count - 1);
                return null;
            case JsonTokenType.PropertyName:
                if (ReadString(ref reader, needText: true) is not { } name)
                {
                    return new JsonProblem(Path(frames, prefix), "A key is not valid text (invalid UTF-8 or a lone UTF-16 surrogate).");
                }

                open!.Property = name;
                return open.Keys.Add(name) ? null : new JsonProblem(Path(frames, prefix), $"The key '{name}' appears more than once in an object; each key may appear once.");
        }

        if (open is { IsArray: true })
        {
            open.Index++;
        }

        if (reader.TokenType == JsonTokenType.String && ReadString(ref reader, needText: false) is null)
        {
            return new JsonProblem(Path(frames, prefix), "The string is not valid text (invalid UTF-8 or a lone UTF-16 surrogate such as \\ud800).");
        }

        if (reader.TokenType is JsonTokenType.StartObject or JsonTokenType.StartArray)
        {
            frames.Add(new Frame(reader.TokenType == JsonTokenType.StartArray));
        }

        return null;
    }

    /// <summary>
    /// The string (or "" when <paramref name="needText"/> is false and it is valid), or null when
    /// it is not valid UTF-8 or its escapes make a lone surrogate.
    /// </summary>
    private static string? ReadString(ref Utf8JsonReader reader, bool needText)
    {
        if (!reader.ValueIsEscaped && !needText)
        {
            // Most string values (base64 images included) take this path: validated in place, nothing allocated.
            return Utf8.IsValid(reader.ValueSpan) ? "" : null;
        }

        try
        {
            return reader.GetString();
        }
        catch (InvalidOperationException)
        {
            return null;
        }
    }

    /// <summary>The path of the current value: <c>prefix</c>, keys joined by '.', array indexes in brackets.</summary>
    private static string? Path(List<Frame> frames, string? prefix)
    {
        var path = new System.Text.StringBuilder(prefix);
        foreach (Frame frame in frames)
        {
            if (frame.IsArray && frame.Index >= 0)
            {
                path.Append('[').Append(frame.Index).Append(']');
            }
            else if (!frame.IsArray && frame.Property is not null)
            {
                path.Append(path.Length > 0 ? "." : "").Append(frame.Property);
            }
        }

        return path.Length > 0 ? path.ToString() : null;
    }
}
