using System.CommandLine;
using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Serving.Runtime.Devices;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models;
using Serving.Runtime.Text;

namespace Serving.Cli;

/// <summary>
/// <c>serving generate --model DIR [--dtype q4|q8|fp16|fp32] --prompt TEXT [--max-tokens N] [--temperature T] [--seed S] [--json] [--chat]
/// [--kv-policy triattention|window|knorm|none] [--kv-budget N] [--json-schema FILE]</c>.
/// </summary>
internal static class GenerateCommand
{
    public static Command Create()
    {
        var model = new Option<DirectoryInfo>("--model") { Description = "Model folder (Hugging Face ONNX layout)", Required = true };
        var prompt = new Option<string>("--prompt") { Description = "Prompt text (BOS is added as tokenizer_config.json says)", Required = true };
        var maxTokens = new Option<int>("--max-tokens") { Description = "Tokens to generate at most", DefaultValueFactory = _ => 64 };
        var temperature = new Option<double>("--temperature") { Description = "0 is greedy", DefaultValueFactory = _ => 0 };
        var seed = new Option<int?>("--seed") { Description = "Seed for sampling (same seed, same output)" };
        var json = new Option<bool>("--json") { Description = "Print one JSON object with ids, text and timings, nothing else on stdout" };
        var chat = new Option<bool>("--chat") { Description = "Send the prompt as a user turn through the model's chat template" };
        var kvPolicy = new Option<string>("--kv-policy")
        {
            Description = "KV-cache eviction: " + string.Join(", ", KvCompressionOptions.PolicyNames) + " (triattention needs serving calibrate-kv first)",
            DefaultValueFactory = _ => KvCompressionOptions.None,
        };
        var kvBudget = new Option<int>("--kv-budget") { Description = "Tokens each global layer keeps after a compression", DefaultValueFactory = _ => new KvCompressionOptions().Budget };
        var jsonSchema = new Option<FileInfo?>("--json-schema") { Description = "Constrain the output to JSON matching this JSON Schema file (as response_format json_schema does)" };
        var dtype = DtypeOption.Create();
        var device = DeviceOption.Create();
        var kvCacheDtype = new Option<string>("--kv-cache-dtype")
        {
            Description = "Element type of the KV cache, as the server's Serving:KvCacheDtype: fp16 (default: each key and value rounded to nearest even as stored; attention math stays fp32) or fp32",
            DefaultValueFactory = _ => "fp16",
        };
        kvCacheDtype.AcceptOnlyFromAmong([.. KvCacheDtypes.Names]);
        var command = new Command("generate", "Generate a continuation of a prompt")
        {
            model, dtype, device, prompt, maxTokens, temperature, seed, json, chat, kvPolicy, kvBudget, kvCacheDtype, jsonSchema,
        };
        command.SetAction(result => Run(result.GetValue(model)!, result.GetValue(dtype), result.GetValue(device)!, KvCacheDtypes.Parse(result.GetValue(kvCacheDtype)!),
            result.GetValue(prompt)!, result.GetValue(chat),
            new GenerateOptions(result.GetValue(maxTokens), result.GetValue(temperature), result.GetValue(seed),
                KvCompression: new KvCompressionOptions { Policy = result.GetValue(kvPolicy)!, Budget = result.GetValue(kvBudget) },
                ResponseSchema: ReadSchema(result.GetValue(jsonSchema))), result.GetValue(json)));
        return command;
    }

    private static Serving.Runtime.Generation.Structured.SchemaNode? ReadSchema(FileInfo? file)
    {
        if (file is null)
        {
            return null;
        }

        if (!file.Exists)
        {
            throw new UsageException($"--json-schema: file not found: {file.FullName}");
        }

        try
        {
            return Serving.Runtime.Generation.Structured.JsonSchemaCompiler.Compile(System.Text.Json.Nodes.JsonNode.Parse(File.ReadAllText(file.FullName)));
        }
        catch (System.Text.Json.JsonException e)
        {
            throw new UsageException($"--json-schema: {file.FullName} is not JSON: {e.Message}");
        }
        catch (Serving.Runtime.Generation.Structured.UnsupportedSchemaException e)
        {
            throw new UsageException($"--json-schema: {e.Message}");
        }
    }

    private static int Run(DirectoryInfo folder, string? dtype, string device, KvCacheDtype kvCacheDtype, string prompt, bool chat, GenerateOptions options, bool json)
    {
        if (options.MaxTokens < 1)
        {
            throw new UsageException($"--max-tokens must be at least 1, got {options.MaxTokens}");
        }

        if (new SamplingParams { Temperature = options.Temperature }.Validate() is not null)
        {
            throw new UsageException($"--temperature must be a finite number ≥ 0, got {options.Temperature}");
        }

        if (options.KvCompression?.Validate(slidingSlots: 0) is { } invalid)
        {
            throw new UsageException($"--kv-{invalid.Field.Replace('_', '-')}: {invalid.Message}");
        }

        if (!folder.Exists)
        {
            throw new UsageException($"model folder not found: {folder.FullName}");
        }

        var clock = Stopwatch.StartNew();
        using ILoggerFactory logging = CommandLine.StderrLogging();
        ILogger logger = logging.CreateLogger("serving");
        // The serving engine's attention over the paged KV cache: the CLI runs what the server runs.
        ExecutionDevice executionDevice = DeviceOption.Select(device);
        using DecoderModel decoder = DecoderModel.Load(folder.FullName,
            new DecoderLoadOptions { Dtype = dtype, PagedAttention = true, Device = executionDevice, KvCacheDtype = kvCacheDtype }, logger);
        GemmaTokenizer tokenizer = decoder.Tokenizer;
        double loadMs = clock.Elapsed.TotalMilliseconds;

        int[] promptIds = chat ? ChatPromptIds(tokenizer, prompt) : tokenizer.Encode(prompt);
        if (promptIds.Length == 0)
        {
            throw new UsageException("--prompt is empty and the tokenizer adds no BOS token: there is nothing to continue");
        }

        int context = decoder.Config.MaxPositionEmbeddings;
        if (promptIds.Length + options.MaxTokens > context)
        {
            throw new UsageException(
                $"the prompt ({promptIds.Length} tokens) plus --max-tokens ({options.MaxTokens}) exceeds the model's context length ({context}, max_position_embeddings)");
        }

        // After every usage check, so a usage error is the first line on stderr.
        DeviceOption.Log(logger, device, executionDevice);

        IncrementalDetokenizer detokenizer = tokenizer.CreateDetokenizer();
        GenerationResult result;
        try
        {
            result = BatchOfOne.Generate(decoder, promptIds, options, json ? null : token => Console.Write(detokenizer.Add(token)));
        }
        catch (ArgumentException e) when (e.ParamName == "compression")
        {
            // The options are valid in general but not for this model (a budget under its window, no calibration).
            throw new UsageException($"--kv-policy {options.KvCompression!.Policy} --kv-budget {options.KvCompression.Budget}: {e.Message}");
        }


        if (json)
        {
            WriteJson(promptIds, result, tokenizer.Decode(result.TokenIds.ToArray(), skipSpecialTokens: true), loadMs);
        }
        else
        {
            Console.WriteLine(detokenizer.Flush());
            Console.Error.WriteLine(
                $"[{promptIds.Length} prompt tokens, {result.TokenIds.Count} generated ({result.FinishReason}); load {loadMs:F0} ms, prefill {result.PrefillMs:F1} ms, decode {result.DecodeTokensPerSecond:F1} tokens/s; "
                + $"KV peak {result.KvTokensPeak} tokens, {result.KvBytesPeak} bytes, {result.EvictedTokens} evicted]");
        }

        return CommandLine.Ok;
    }

    /// <summary>
    /// The rendered template already starts with BOS, so it is encoded without special
    /// tokens (as transformers' apply_chat_template does).
    /// </summary>
    private static int[] ChatPromptIds(GemmaTokenizer tokenizer, string prompt)
    {
        if (tokenizer.ChatTemplateJinja is null)
        {
            throw new UsageException("--chat: the model's tokenizer_config.json has no chat_template");
        }

        string text = ChatTemplate.Render([new ChatMessage("user", prompt)], addGenerationPrompt: true);
        return tokenizer.Encode(text, addSpecialTokens: false);
    }

    private static void WriteJson(int[] promptIds, GenerationResult result, string text, double loadMs)
    {
        using var stream = Console.OpenStandardOutput();
        using var writer = new Utf8JsonWriter(stream);
        writer.WriteStartObject();
        writer.WriteStartArray("prompt_token_ids");
        foreach (int id in promptIds)
        {
            writer.WriteNumberValue(id);
        }

        writer.WriteEndArray();
        writer.WriteStartArray("token_ids");
        foreach (int id in result.TokenIds)
        {
            writer.WriteNumberValue(id);
        }

        writer.WriteEndArray();
        writer.WriteString("text", text);
        writer.WriteString("finish_reason", result.FinishReason);
        writer.WriteNumber("kv_tokens_peak", result.KvTokensPeak);
        writer.WriteNumber("kv_bytes_peak", result.KvBytesPeak);
        writer.WriteNumber("kv_evicted_tokens", result.EvictedTokens);
        writer.WriteStartObject("timings");
        writer.WriteNumber("load_ms", Math.Round(loadMs, 3));
        writer.WriteNumber("prefill_ms", Math.Round(result.PrefillMs, 3));
        writer.WriteNumber("decode_tokens_per_second", Math.Round(result.DecodeTokensPerSecond, 3));
        if (result.StructuredMaskMs > 0)
        {
            writer.WriteNumber("json_mask_ms", Math.Round(result.StructuredMaskMs, 3));
        }

        writer.WriteEndObject();
        writer.WriteEndObject();
        writer.Flush();
        stream.WriteByte((byte)'\n');
    }
}
