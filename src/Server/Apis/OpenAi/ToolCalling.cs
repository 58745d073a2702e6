using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Serving.Runtime.Generation.Structured;

namespace Serving.Server.Apis.OpenAi;

/// <summary>How a request lets the model use its tools (OpenAI's <c>tool_choice</c>).</summary>
public enum ToolMode
{
    None,
    Auto,
    Required,
    Named,
}

/// <summary>One function a request offers: its name, description and compiled parameters.</summary>
public sealed record ToolFunction(string Name, string? Description, JsonNode Parameters, SchemaNode Schema);

/// <summary>
/// OpenAI's <c>tools</c>, <c>tool_choice</c> and <c>parallel_tool_calls</c> for Gemma 3, which has
/// no tool tokens. We follow the JSON convention of Llama 3.1's JSON tool calling (vLLM's
/// <c>llama3_json</c> parser) adapted to Gemma's turns: the functions are listed, as JSON, at the
/// start of the first user turn with an instruction; a call is the model's whole reply, one compact
/// JSON object <c>{"tool_calls":[{"name":"f","arguments":{…}}]}</c>; an assistant turn that called
/// tools is rendered as that object, and <c>role: "tool"</c> results as a user turn of
/// <c>```tool_output</c> blocks (Google's Gemma function-calling guide uses these fences). With
/// <c>required</c> or a named function the reply is constrained to a call whose arguments match the
/// function's parameters; with <c>auto</c> the first token decides: a reply that starts with
/// <c>{</c> is constrained as a call from there on, anything else is free text.
/// </summary>
public sealed class ToolCalling
{
    private ToolCalling(IReadOnlyList<ToolFunction> functions, ToolMode mode, string? named, bool parallel)
    {
        Functions = functions;
        Mode = mode;
        Parallel = parallel;
        Schema = mode == ToolMode.None ? null : CallSchema(named is null ? functions : [.. functions.Where(f => f.Name == named)], parallel);
    }

    public IReadOnlyList<ToolFunction> Functions { get; }

    public ToolMode Mode { get; }

    public bool Parallel { get; }

    /// <summary>The reply's schema when a call is possible: <c>{"tool_calls": [call, …]}</c>.</summary>
    public SchemaNode? Schema { get; }

    /// <summary>The request's tools, or null when it offers none; an error names the field at fault.</summary>
    public static (ToolCalling? Tools, string? Param, string? Error) Read(JsonElement? tools, JsonElement? toolChoice, bool? parallelToolCalls)
    {
        bool hasChoice = toolChoice is { ValueKind: not JsonValueKind.Null };
        if (tools is not { ValueKind: not JsonValueKind.Null } list || (list.ValueKind == JsonValueKind.Array && list.GetArrayLength() == 0))
        {
            return hasChoice && !(toolChoice!.Value.ValueKind == JsonValueKind.String && toolChoice.Value.ValueEquals("none"))
                ? (null, "tool_choice", "tool_choice needs tools.")
                : (null, null, null);
        }

        if (list.ValueKind != JsonValueKind.Array)
        {
            return (null, "tools", "tools must be an array of {type: \"function\", function: {name, description, parameters}}.");
        }

        if (list.GetArrayLength() > 128)
        {
            return (null, "tools", "at most 128 tools are supported.");
        }

        var functions = new List<ToolFunction>();
        int index = 0;
        foreach (JsonElement tool in list.EnumerateArray())
        {
            if (tool.ValueKind != JsonValueKind.Object || !tool.TryGetProperty("type", out JsonElement type) || !type.ValueEquals("function")
                || !tool.TryGetProperty("function", out JsonElement function) || function.ValueKind != JsonValueKind.Object)
            {
                return (null, "tools", $"tools[{index}] must be {{type: \"function\", function: {{...}}}}.");
            }

            if (!function.TryGetProperty("name", out JsonElement name) || name.ValueKind != JsonValueKind.String
                || name.GetString() is not { Length: > 0 and <= 64 } functionName || !functionName.All(c => char.IsAsciiLetterOrDigit(c) || c is '_' or '-'))
            {
                return (null, "tools", $"tools[{index}].function.name must be 1 to 64 letters, digits, underscores or dashes.");
            }

            if (functions.Any(f => f.Name == functionName))
            {
                return (null, "tools", $"tools[{index}]: the function name '{functionName}' is listed twice.");
            }

            string? description = function.TryGetProperty("description", out JsonElement d) && d.ValueKind == JsonValueKind.String ? d.GetString() : null;
            JsonNode parameters = function.TryGetProperty("parameters", out JsonElement p) && p.ValueKind != JsonValueKind.Null
                ? JsonNode.Parse(p.GetRawText())!
                : new JsonObject { ["type"] = "object", ["properties"] = new JsonObject() };
            try
            {
                functions.Add(new ToolFunction(functionName, description, parameters, JsonSchemaCompiler.Compile(parameters)));
            }
            catch (UnsupportedSchemaException e)
            {
                return (null, "tools", $"tools[{index}].function.parameters: {e.Message}");
            }

            index++;
        }

        var (mode, named, choiceError) = ReadChoice(toolChoice, functions);
        return choiceError is not null
            ? (null, "tool_choice", choiceError)
            : (new ToolCalling(functions, mode, named, parallelToolCalls ?? true), null, null);
    }

    private static (ToolMode Mode, string? Named, string? Error) ReadChoice(JsonElement? choice, List<ToolFunction> functions)
    {
        if (choice is not { ValueKind: not JsonValueKind.Null } value)
        {
            return (ToolMode.Auto, null, null);
        }

        if (value.ValueKind == JsonValueKind.String)
        {
            return value.GetString() switch
            {
                "none" => (ToolMode.None, null, null),
                "auto" => (ToolMode.Auto, null, null),
                "required" => (ToolMode.Required, null, null),
                _ => (ToolMode.None, null, "tool_choice must be none, auto, required or {type: \"function\", function: {name}}."),
            };
        }

        if (value.ValueKind == JsonValueKind.Object && value.TryGetProperty("function", out JsonElement function)
            && function.ValueKind == JsonValueKind.Object && function.TryGetProperty("name", out JsonElement name) && name.ValueKind == JsonValueKind.String)
        {
            string wanted = name.GetString()!;
            return functions.Any(f => f.Name == wanted)
                ? (ToolMode.Named, wanted, null)
                : (ToolMode.None, null, $"tool_choice names the function '{wanted}', which tools does not list.");
        }

        return (ToolMode.None, null, "tool_choice must be none, auto, required or {type: \"function\", function: {name}}.");
    }

    /// <summary><c>{"tool_calls":[{"name": one of the functions, "arguments": its parameters}, …]}</c>, one call unless parallel.</summary>
    private static SchemaNode CallSchema(IReadOnlyList<ToolFunction> functions, bool parallel)
    {
        var calls = functions.Select(function =>
        {
            var call = new SchemaNode
            {
                Kinds = JsonKinds.Object,
                Properties =
                [
                    Property("name", new SchemaNode { Literals = [Encoding.UTF8.GetBytes(JsonSerializer.Serialize(function.Name))] }),
                    Property("arguments", function.Schema),
                ],
            };
            return (Func<SchemaNode>)(() => call);
        }).ToList();
        var items = new SchemaNode { AnyOf = calls, Kinds = JsonKinds.Any };
        var array = new SchemaNode { Kinds = JsonKinds.Array, Items = () => items, MinItems = 1, MaxItems = parallel ? int.MaxValue : 1 };
        return new SchemaNode { Kinds = JsonKinds.Object, Properties = [Property("tool_calls", array)] };
    }

    private static SchemaProperty Property(string name, SchemaNode schema) =>
        new(name, Encoding.UTF8.GetBytes(JsonSerializer.Serialize(name) + ":"), Required: true, () => schema);

    /// <summary>The instruction and function list put before the first user turn's text.</summary>
    public string Prompt()
    {
        var text = new StringBuilder("You can call functions. To call one or more, reply with only a JSON object, nothing else: ");
        text.Append("{\"tool_calls\":[{\"name\":\"FUNCTION\",\"arguments\":{...}}]}");
        text.Append(Mode == ToolMode.None ? ". Do not call any function now." : ". Otherwise reply in plain text.");
        text.Append("\nFunctions:");
        foreach (ToolFunction function in Functions)
        {
            var entry = new JsonObject { ["name"] = function.Name, ["parameters"] = function.Parameters.DeepClone() };
            if (function.Description is not null)
            {
                entry["description"] = function.Description;
            }

            text.Append('\n').Append(entry.ToJsonString());
        }

        return text.ToString();
    }

    /// <summary>An assistant turn that called tools, as the model writes a call.</summary>
    public static string RenderCalls(IEnumerable<(string Name, string Arguments)> calls)
    {
        var array = new JsonArray();
        foreach (var (name, arguments) in calls)
        {
            JsonNode? parsed;
            try
            {
                parsed = JsonNode.Parse(arguments);
            }
            catch (JsonException)
            {
                parsed = JsonValue.Create(arguments);
            }

            array.Add(new JsonObject { ["name"] = name, ["arguments"] = parsed });
        }

        return new JsonObject { ["tool_calls"] = array }.ToJsonString();
    }

    /// <summary>Tool results, as the user turn that follows the call.</summary>
    public static string RenderResults(IEnumerable<string> results) =>
        string.Join("\n", results.Select(result => "```tool_output\n" + result + "\n```"));

    /// <summary>The calls in a reply, or null when it is not a complete call object (free text, or cut off).</summary>
    public static List<ToolCallOut>? ParseCalls(string reply)
    {
        if (!reply.StartsWith("{\"tool_calls\":", StringComparison.Ordinal))
        {
            return null;
        }

        try
        {
            if (JsonNode.Parse(reply)?["tool_calls"] is not JsonArray calls)
            {
                return null;
            }

            return [.. calls.Select(call => new ToolCallOut(GenerationEndpoint.NewId("call_"), "function",
                new ToolCallFunction(call!["name"]!.GetValue<string>(), call["arguments"]!.ToJsonString())))];
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
