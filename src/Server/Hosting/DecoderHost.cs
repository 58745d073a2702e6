using Microsoft.Extensions.Options;
using Serving.Runtime.Devices;
using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Models;
using Serving.Runtime.Models.Gemma3;
using Serving.Runtime.Telemetry;

namespace Serving.Server.Hosting;

/// <summary>
/// Loads every decoder of the <see cref="ModelCatalog"/> after Kestrel starts (so liveness
/// answers while weights load) and owns one <see cref="Engine"/> per model. Readiness turns
/// true when all are loaded; a model that fails to load stops the server with its reason.
/// </summary>
public sealed class DecoderHost(ModelCatalog catalog, IOptions<ServingOptions> options, IHostApplicationLifetime lifetime, ILogger<DecoderHost> logger,
    ServingTelemetry telemetry, IOptions<TelemetryOptions> telemetryOptions)
    : IHostedService, IDisposable
{
    private readonly Dictionary<string, Engine> _engines = new(StringComparer.Ordinal);
    private Task? _loading;
    private volatile bool _isReady;

    public bool IsReady => _isReady;

    /// <summary>The engine serving <paramref name="id"/>, or null when no decoder has that id.</summary>
    public Engine? Find(string id) => _isReady && _engines.TryGetValue(id, out Engine? engine) ? engine : null;

    public IEnumerable<KeyValuePair<string, Engine>> Engines => _isReady ? _engines : [];

    public Task StartAsync(CancellationToken cancellationToken)
    {
        _loading = Task.Run(LoadAll, CancellationToken.None);
        return Task.CompletedTask;
    }

    private void LoadAll()
    {
        ServingOptions settings = options.Value;
        var engineOptions = new EngineOptions
        {
            KvCacheBytes = settings.KvCacheBytes,
            MaxQueueLength = settings.MaxQueueLength,
            MaxBatchSize = settings.MaxBatchSize,
            MaxPrefillTokensPerStep = settings.MaxPrefillTokensPerStep,
            PrefixCaching = settings.PrefixCaching,
            KvCompression = settings.KvCompression,
        };
        try
        {
            ExecutionDevice device = SelectDevice(settings);
            foreach (ModelEntry entry in catalog.OfType(Gemma3Config.ModelType))
            {
                var model = DecoderModel.Load(entry.Folder,
                    new DecoderLoadOptions
                    {
                        IntraOpThreads = settings.IntraOpThreads, OnnxFile = entry.OnnxFile, Dtype = entry.Dtype, PagedAttention = true, Device = device,
                        KvCacheDtype = KvCacheDtypes.Parse(settings.KvCacheDtype),
                    },
                    logger);
                Engine engine = _engines[entry.Id] = NewEngine(entry.Id, model, engineOptions);
                logger.LogInformation("Serving '{Id}' from {Folder} ({Layers} layers, context {Context}) on {Device}",
                    entry.Id, entry.Folder, model.Config.NumHiddenLayers, model.Config.MaxPositionEmbeddings, model.Device.Name);
                // vLLM's "KV cache size: N tokens": every layer holding every token (sliding layers hold less, so more fit).
                logger.LogInformation("'{Id}' KV cache: {Blocks} blocks of {BlockTokens} tokens, {Bytes} bytes of {Dtype} in {Device} memory: {Tokens} tokens",
                    entry.Id, engine.Kv.NumBlocks, engine.Kv.BlockTokens, engine.Kv.AllocatedBytes, settings.KvCacheDtype, engine.Kv.Pool.Device.Name,
                    (long)engine.Kv.NumBlocks / engine.Kv.Layout.Layers * engine.Kv.BlockTokens);
            }

            _isReady = true;
        }
        catch (Exception e) when (e is ModelLoadException or DeviceUnavailableException or NotSupportedException or IOException or ArgumentException)
        {
            logger.LogCritical("Cannot serve the configured models: {Reason}", e.Message);
            Environment.ExitCode = 1;
            // Not before the host has started: a stop while Kestrel still binds cancels its start, and the
            // TaskCanceledException out of app.Run() aborted the process (exit 134 instead of 1, 1 start in 6 here).
            lifetime.ApplicationStarted.Register(lifetime.StopApplication);
        }
    }

    /// <summary>Serving:Device, decided once (probing CUDA only when no decoder is configured would be wasted, so only then it is skipped).</summary>
    private ExecutionDevice SelectDevice(ServingOptions settings)
    {
        if (!catalog.OfType(Gemma3Config.ModelType).Any())
        {
            return ExecutionDevice.Cpu;
        }

        ExecutionDevice device = ExecutionDevice.Select(DeviceRequest.Parse(settings.Device), CudaProbe.WhyNot);
        logger.LogInformation("Device {Request}: {Choice}", settings.Device, device.Describe());
        return device;
    }

    private Engine NewEngine(string id, DecoderModel model, EngineOptions engineOptions)
    {
        bool isTelemetryOn = telemetryOptions.Value.Enabled;
        var engine = new Engine(model, engineOptions, logger, isTelemetryOn ? telemetry.ForEngine(id, engineOptions.KvCompression.Policy) : EngineTelemetry.None);
        if (isTelemetryOn)
        {
            telemetry.Track(id, engine);
        }

        return engine;
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_loading is not null)
        {
            await _loading.WaitAsync(cancellationToken);
        }
    }

    public void Dispose()
    {
        // The container disposes this object twice (as itself and as a hosted service).
        foreach (Engine engine in _engines.Values)
        {
            engine.Dispose();
            engine.Model.Dispose();
        }

        _engines.Clear();
    }
}
