using System.Runtime.ExceptionServices;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Devices;
using Serving.Runtime.KvCompression;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Text;

namespace Serving.Runtime.Models;

/// <summary>Options for <see cref="DecoderModel.Load"/>; immutable once loaded.</summary>
public sealed record DecoderLoadOptions
{
    /// <summary>
    /// The .onnx file relative to the folder; wins over <see cref="Dtype"/>. Null finds it:
    /// <see cref="Dtype"/>, config.json's <c>transformers.js_config.dtype</c>, genai_config.json,
    /// then onnx/model.onnx or model.onnx.
    /// </summary>
    public string? OnnxFile { get; init; }

    /// <summary>A transformers.js dtype (fp32, fp16, q8, q4, …: <see cref="OnnxVariant"/>) picking onnx/model{suffix}.onnx; null for the folder's default.</summary>
    public string? Dtype { get; init; }

    /// <summary>ONNX Runtime intra-op threads; 0 lets ONNX Runtime use every core.</summary>
    public int IntraOpThreads { get; init; }

    /// <summary>
    /// Rewrite the attention to read a paged KV cache in place (<see cref="PagedAttentionRewrite"/>),
    /// as the serving engine needs; false keeps the graph as exported (the CLI's single-sequence tools).
    /// </summary>
    public bool PagedAttention { get; init; }

    /// <summary>Read <c>kv_calibration.json</c> when present (calibrate-kv turns this off: it replaces the file).</summary>
    public bool ReadKvCalibration { get; init; } = true;

    /// <summary>
    /// Where the session runs (<see cref="ExecutionDevice.Select"/>). On CUDA, ONNX Runtime's CUDA provider
    /// takes every node it has a kernel for, our SparseMatMul24 and PagedAttention included: a paged
    /// session then reads the engine's KV pool in device memory (<see cref="Generation.Kv.KvPool.Allocate"/>).
    /// </summary>
    public ExecutionDevice Device { get; init; } = ExecutionDevice.Cpu;

    /// <summary>The element type of the paged KV pool (<see cref="PagedAttention"/> only; the exported graph keeps its own caches).</summary>
    public Generation.Kv.KvCacheDtype KvCacheDtype { get; init; }
}

/// <summary>
/// A decoder LLM folder in the Hugging Face ONNX layout (transformers.js / Optimum /
/// onnxruntime-genai), opened as an ONNX Runtime session with its signature discovered.
/// </summary>
public sealed class DecoderModel : IDisposable
{
    private DecoderModel(string folder, string onnxPath, Gemma3Config config, GenerationDefaults generation, GemmaTokenizer tokenizer,
        InferenceSession session, DecoderSignature signature, KvCalibration? kvCalibration, ExecutionDevice device)
    {
        KvCalibration = kvCalibration;
        Device = device;
        Folder = folder;
        Tokenizer = tokenizer;
        OnnxPath = onnxPath;
        Config = config;
        Generation = generation;
        Session = session;
        Signature = signature;
    }

    public string Folder { get; }
    public string OnnxPath { get; }
    public Gemma3Config Config { get; }
    public GenerationDefaults Generation { get; }
    public GemmaTokenizer Tokenizer { get; }
    public InferenceSession Session { get; }
    public DecoderSignature Signature { get; }

    /// <summary>Where the session runs: <c>cpu</c> or <c>cuda:N</c>.</summary>
    public ExecutionDevice Device { get; }

    /// <summary>TriAttention's query statistics from <c>kv_calibration.json</c>, or null when the folder has none.</summary>
    public KvCalibration? KvCalibration { get; }

    /// <summary>Opens <paramref name="folder"/>; throws <see cref="ModelLoadException"/> naming the file at fault.</summary>
    public static DecoderModel Load(string folder, DecoderLoadOptions? options = null, ILogger? logger = null)
    {
        options ??= new DecoderLoadOptions();
        logger ??= NullLogger.Instance;
        if (!Directory.Exists(folder))
        {
            throw new ModelLoadException(folder, "model folder not found");
        }

        string configPath = Path.Combine(folder, "config.json");
        JsonObject configJson = ReadOptionalJson(configPath) ?? throw new ModelLoadException(configPath, "config.json not found");
        Gemma3Config config = ReadConfig(configPath, configJson);
        string genaiPath = Path.Combine(folder, GenAiConfig.FileName);
        JsonObject? genai = ReadOptionalJson(genaiPath);
        var (names, genaiFile) = ReadGenAiConfig(genaiPath, genai, config);
        string onnxPath = OnnxFileChoice.Resolve(folder, options, genaiFile, configPath, configJson);
        GenerationDefaults generation = GenerationDefaults.Read(folder, config);
        KvCalibration? kvCalibration = options.ReadKvCalibration ? LoadKvCalibration(folder, config) : null;

        // The tokenizer (a 262k-entry tokenizer.json takes ~0.8 s) loads while ONNX Runtime builds
        // the session; its errors still come first, as when they loaded one after the other.
        Task<GemmaTokenizer> tokenizerLoad = Task.Run(() => LoadTokenizer(folder, config));
        InferenceSession? session = null;
        ExceptionDispatchInfo? sessionError = null;
        bool rotaryFromCacheLength = false;
        try
        {
            // Read once: genai_config.json's names are checked against it, then it is fused or rewritten in memory.
            Onnx.Proto.ModelProto graph = LoadGraph(onnxPath);
            CheckGenAiTensorNames(genaiPath, genai, onnxPath, graph);
            rotaryFromCacheLength = graph.Graph.Node.Any(node => node.OpType == Gemma3GqaGraph.AttentionOp
                && PagedAttentionRewrite.IntAttribute(node, "do_rotary") is 1);
            session = options.PagedAttention ? OpenPagedSession(onnxPath, graph, config, names, options) : OpenSession(onnxPath, graph, options);
        }
        catch (Exception e)
        {
            sessionError = ExceptionDispatchInfo.Capture(e);
        }

        try
        {
            GemmaTokenizer tokenizer = tokenizerLoad.GetAwaiter().GetResult();
            sessionError?.Throw();
            ReturnLoadGarbage();
            if (options.PagedAttention)
            {
                return new DecoderModel(folder, onnxPath, config, generation, tokenizer, session!, DecoderSignature.Paged(config, options.KvCacheDtype), kvCalibration, options.Device);
            }

            var signature = DecoderSignature.Discover(session!, config, names, message => new ModelLoadException(onnxPath, message))
                with { RotaryFromCacheLength = rotaryFromCacheLength };
            if (signature.CompressionBlocker is { } reason)
            {
                logger.LogWarning("{File} {Reason}: it is served, but KV-cache compression is unavailable for it (the paged engine rewrites it and can)",
                    onnxPath, reason);
            }

            return new DecoderModel(folder, onnxPath, config, generation, tokenizer, session!, signature, kvCalibration, options.Device);
        }
        catch
        {
            session?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// Loading parses the graph, its rewritten copy and the tokenizer's JSON (47 MB for our random
    /// presets' 262k-token tokenizer_config.json): garbage the GC would otherwise keep committed for
    /// the process's life. One compacting collection that returns it to the OS: the 270M q4 model's
    /// resident memory after load fell from 749 to 584 MB, for about 60–150 ms (proportional to what
    /// stays alive; a few ms for the tests' tiny models).
    /// </summary>
    private static void ReturnLoadGarbage() => GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);

    /// <summary>
    /// The folder's tokenizer. It may know more ids than the embedding (real Gemma 3 lists an
    /// image token past vocab_size), never fewer: the model could emit ids it cannot decode.
    /// </summary>
    private static GemmaTokenizer LoadTokenizer(string folder, Gemma3Config config)
    {
        GemmaTokenizer tokenizer;
        try
        {
            tokenizer = GemmaTokenizer.Load(folder);
        }
        catch (Exception e) when (e is FileNotFoundException or InvalidDataException)
        {
            throw new ModelLoadException((e as FileNotFoundException)?.FileName ?? Path.Combine(folder, "tokenizer.model"), e.Message, e);
        }

        if (tokenizer.VocabSize < config.VocabSize)
        {
            throw new ModelLoadException(Path.Combine(folder, "tokenizer.model"),
                $"the tokenizer has {tokenizer.VocabSize} pieces but config.json says vocab_size = {config.VocabSize}");
        }

        return tokenizer;
    }

    private static KvCalibration? LoadKvCalibration(string folder, Gemma3Config config)
    {
        try
        {
            return KvCalibration.TryLoad(folder, config);
        }
        catch (InvalidDataException e)
        {
            throw new ModelLoadException(Path.Combine(folder, KvCalibration.FileName), e.Message, e);
        }
    }

    private static Gemma3Config ReadConfig(string path, JsonObject json)
    {
        string? modelType = json["model_type"] is JsonValue value && value.TryGetValue(out string? text) ? text : json["model_type"]?.ToJsonString();
        if (modelType != Gemma3Config.ModelType)
        {
            throw new ModelLoadException(path, $"model_type '{modelType}' is not supported (supported: {Gemma3Config.ModelType})");
        }

        try
        {
            return Gemma3Config.FromJson(json);
        }
        catch (ArgumentException e)
        {
            throw new ModelLoadException(path, e.Message, e);
        }
    }

    private static (DecoderNames Names, string? OnnxFile) ReadGenAiConfig(string path, JsonObject? genai, Gemma3Config config)
    {
        string? disagreement;
        try
        {
            disagreement = GenAiConfig.Disagreement(genai, config);
        }
        catch (Exception e) when (e is FormatException or InvalidOperationException)
        {
            throw new ModelLoadException(path, $"a shape field is not an integer: {e.Message}", e);
        }

        if (disagreement is not null)
        {
            throw new ModelLoadException(path, $"disagrees with config.json: {disagreement}");
        }

        try
        {
            return (GenAiConfig.Names(genai), GenAiConfig.DecoderFile(genai));
        }
        catch (InvalidOperationException e)
        {
            throw new ModelLoadException(path, $"a decoder name or filename is not a string: {e.Message}", e);
        }
    }

    /// <summary>Every tensor genai_config.json names must be in the graph.</summary>
    private static void CheckGenAiTensorNames(string genaiPath, JsonObject? genai, string onnxPath, Onnx.Proto.ModelProto graph)
    {
        if (GenAiConfig.MissingTensor(genai, graph.Graph) is { } missing)
        {
            throw new ModelLoadException(genaiPath, $"disagrees with {Path.GetFileName(onnxPath)}: {missing}");
        }
    }

    /// <summary>The graph's structure (external weights stay on disk, read by ONNX Runtime in place).</summary>
    private static Onnx.Proto.ModelProto LoadGraph(string onnxPath)
    {
        try
        {
            return Onnx.OnnxModelFile.Load(onnxPath);
        }
        catch (InvalidDataException e)
        {
            throw new ModelLoadException(onnxPath, $"ONNX Runtime cannot load the model: {e.Message}", e);
        }
    }

    /// <summary>The object in a JSON file, or null when the file does not exist.</summary>
    internal static JsonObject? ReadOptionalJson(string path)
    {
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            var options = new JsonDocumentOptions { AllowDuplicateProperties = false };
            return JsonNode.Parse(File.ReadAllText(path), documentOptions: options) as JsonObject
                ?? throw new ModelLoadException(path, "expected a JSON object");
        }
        catch (JsonException e)
        {
            throw new ModelLoadException(path, $"invalid JSON: {e.Message}", e);
        }
    }

    /// <summary>The export as it is, with <see cref="DecoderFusions"/> applied in memory; the weights are read from the folder's data file in place.</summary>
    private static InferenceSession OpenSession(string onnxPath, Onnx.Proto.ModelProto model, DecoderLoadOptions options)
    {
        byte[] fused;
        try
        {
            DecoderFusions.Apply(model, Path.GetDirectoryName(Path.GetFullPath(onnxPath)));
            fused = Google.Protobuf.MessageExtensions.ToByteArray(model);
        }
        catch (InvalidDataException e)
        {
            throw new ModelLoadException(onnxPath, $"ONNX Runtime cannot load the model: {e.Message}", e);
        }

        using var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = options.IntraOpThreads,
        };
        sessionOptions.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(onnxPath))!);
        ProfileWhenAsked(sessionOptions);
        try
        {
            options.Device.Apply(sessionOptions);
            Sparsity.SparseKernels.RegisterIfUsed(sessionOptions, onnxPath);
            return new InferenceSession(fused, sessionOptions);
        }
        catch (FileNotFoundException e) when (e.FileName?.EndsWith(Sparsity.SparseKernels.LibraryFile, StringComparison.Ordinal) == true)
        {
            throw new ModelLoadException(onnxPath, e.Message, e);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(onnxPath, $"ONNX Runtime cannot load the model: {e.Message}", e);
        }
    }

    /// <summary>The graph rewritten for the paged KV cache, in memory; the weights are read from the folder's data file in place.</summary>
    private static InferenceSession OpenPagedSession(string onnxPath, Onnx.Proto.ModelProto model, Gemma3Config config, DecoderNames names, DecoderLoadOptions options)
    {
        byte[] rewritten;
        try
        {
            rewritten = Google.Protobuf.MessageExtensions.ToByteArray(PagedAttentionRewrite.Rewrite(model, config, names, Path.GetDirectoryName(Path.GetFullPath(onnxPath)),
                cpuFusedOps: !options.Device.IsCuda, kvCacheDtype: options.KvCacheDtype));
        }
        catch (Exception e) when (e is PagedRewriteException or InvalidDataException)
        {
            throw new ModelLoadException(onnxPath, e.Message, e);
        }

        string library = Sparsity.SparseKernels.LibraryPath;
        if (!File.Exists(library))
        {
            throw new ModelLoadException(onnxPath, $"the paged KV cache needs {Sparsity.SparseKernels.LibraryFile} in {Path.GetDirectoryName(library)}: build src/Runtime on Linux with cmake installed");
        }

        using var sessionOptions = new SessionOptions
        {
            GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
            IntraOpNumThreads = options.IntraOpThreads,
        };
        sessionOptions.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(Path.GetFullPath(onnxPath))!);
        // On CUDA the engine's pool is device memory (KvPool.Allocate), which the provider's PagedAttention kernel reads in place.
        sessionOptions.AddSessionConfigEntry("serving.kv_pool", options.Device.IsCuda ? "device" : "host");
        sessionOptions.RegisterCustomOpLibrary(library);
        ProfileWhenAsked(sessionOptions);
        try
        {
            options.Device.Apply(sessionOptions);
            return new InferenceSession(rewritten, sessionOptions);
        }
        catch (OnnxRuntimeException e)
        {
            throw new ModelLoadException(onnxPath, $"ONNX Runtime cannot load the model rewritten for the paged KV cache: {e.Message}", e);
        }
    }

    /// <summary>
    /// <c>SERVING_ORT_PROFILE=PREFIX</c>: ONNX Runtime's per-node profile of every run, written to
    /// <c>PREFIX_&lt;time&gt;.json</c> when the session closes (benchmarks/generate/ort-profile.py sums it by operator).
    /// </summary>
    private static void ProfileWhenAsked(SessionOptions sessionOptions)
    {
        if (Environment.GetEnvironmentVariable("SERVING_ORT_PROFILE") is { Length: > 0 } prefix)
        {
            sessionOptions.ProfileOutputPathPrefix = prefix;
            sessionOptions.EnableProfiling = true;
        }
    }

    public void Dispose() => Session.Dispose();
}
