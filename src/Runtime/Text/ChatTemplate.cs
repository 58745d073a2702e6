using System.Text;

namespace Serving.Runtime.Text;

/// <summary>One chat turn: <c>system</c>, <c>user</c> or <c>assistant</c>, with plain-text content.</summary>
public sealed record ChatMessage(string Role, string Content);

/// <summary>
/// Gemma 3's chat template. <see cref="Gemma3Jinja"/> is the template text of
/// google/gemma-3-*-it's <c>tokenizer_config.json</c>, verbatim; <see cref="Render"/>
/// produces what that template renders for plain-text messages, without a Jinja engine.
/// </summary>
public static class ChatTemplate
{
    public const string Gemma3Jinja =
        "{{ bos_token }}\n{%- if messages[0]['role'] == 'system' -%}\n    {%- if messages[0]['content'] is string -%}\n        {%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}\n    {%- else -%}\n        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\n\n' -%}\n    {%- endif -%}\n    {%- set loop_messages = messages[1:] -%}\n{%- else -%}\n    {%- set first_user_prefix = \"\" -%}\n    {%- set loop_messages = messages -%}\n{%- endif -%}\n{%- for message in loop_messages -%}\n    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}\n        {{ raise_exception(\"Conversation roles must alternate user/assistant/user/assistant/...\") }}\n    {%- endif -%}\n    {%- if (message['role'] == 'assistant') -%}\n        {%- set role = \"model\" -%}\n    {%- else -%}\n        {%- set role = message['role'] -%}\n    {%- endif -%}\n    {{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else \"\") }}\n    {%- if message['content'] is string -%}\n        {{ message['content'] | trim }}\n    {%- elif message['content'] is iterable -%}\n        {%- for item in message['content'] -%}\n            {%- if item['type'] == 'image' -%}\n                {{ '<start_of_image>' }}\n            {%- elif item['type'] == 'text' -%}\n                {{ item['text'] | trim }}\n            {%- endif -%}\n        {%- endfor -%}\n    {%- else -%}\n        {{ raise_exception(\"Invalid content type\") }}\n    {%- endif -%}\n    {{ '<end_of_turn>\n' }}\n{%- endfor -%}\n{%- if add_generation_prompt -%}\n    {{'<start_of_turn>model\n'}}\n{%- endif -%}\n";

    /// <summary>
    /// Renders <paramref name="messages"/> as Gemma 3's template does: BOS; an optional leading
    /// system message prepended (untrimmed, then a blank line) to the first turn; each turn as
    /// <c>&lt;start_of_turn&gt;{role}\n{content, trimmed}&lt;end_of_turn&gt;\n</c> with
    /// <c>assistant</c> renamed <c>model</c>; then <c>&lt;start_of_turn&gt;model\n</c> when
    /// <paramref name="addGenerationPrompt"/> is set.
    /// </summary>
    /// <exception cref="ArgumentException">No messages, or turns after the system message do not alternate user / non-user starting with user (the template raises).</exception>
    public static string Render(IReadOnlyList<ChatMessage> messages, bool addGenerationPrompt, string bosToken = GemmaVocabulary.BosToken)
    {
        ArgumentNullException.ThrowIfNull(messages);
        if (messages.Count == 0)
        {
            throw new ArgumentException("A chat needs at least one message.", nameof(messages));
        }

        bool hasSystem = messages[0].Role == "system";
        string firstUserPrefix = hasSystem ? messages[0].Content + "\n\n" : "";
        var prompt = new StringBuilder(bosToken);
        for (int i = hasSystem ? 1 : 0, turn = 0; i < messages.Count; i++, turn++)
        {
            ChatMessage message = messages[i];
            if ((message.Role == "user") != (turn % 2 == 0))
            {
                throw new ArgumentException(
                    $"Conversation roles must alternate user/assistant/user/assistant/... (message {i} has role '{message.Role}').",
                    nameof(messages));
            }

            prompt.Append("<start_of_turn>")
                .Append(message.Role == "assistant" ? "model" : message.Role)
                .Append('\n')
                .Append(turn == 0 ? firstUserPrefix : "")
                .Append(JinjaTrim(message.Content))
                .Append("<end_of_turn>\n");
        }

        if (addGenerationPrompt)
        {
            prompt.Append("<start_of_turn>model\n");
        }

        return prompt.ToString();
    }

    /// <summary>Jinja's <c>trim</c> is Python's <c>str.strip()</c>, which also strips U+001C..U+001F.</summary>
    private static string JinjaTrim(string text)
    {
        static bool IsPythonSpace(char c) => char.IsWhiteSpace(c) || c is >= '\x1C' and <= '\x1F';

        int start = 0, end = text.Length;
        while (start < end && IsPythonSpace(text[start]))
        {
            start++;
        }

        while (end > start && IsPythonSpace(text[end - 1]))
        {
            end--;
        }

        return text[start..end];
    }
}
