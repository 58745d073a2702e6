using System.Text.Json;

namespace Serving.Server.Hosting;

/// <summary>One model the server serves: its id, folder and <c>config.json</c> model_type.</summary>
public sealed record ModelEntry(string Id, string Folder, string ModelType, string? OnnxFile = null, string? Dtype = null);

/// <summary>
/// The models named by configuration, or the demo models when none are named. Built once at
/// start; the model services (decoders, CLIP encoders) each load the entries of their types.
/// </summary>
public sealed class ModelCatalog
{
    private ModelCatalog(IReadOnlyList<ModelEntry> entries) => Entries = entries;

    public IReadOnlyList<ModelEntry> Entries { get; }

    public ModelEntry? Find(string id)
    {
        foreach (ModelEntry entry in Entries)
        {
            if (entry.Id == id)
            {
                return entry;
            }
        }

        return null;
    }

    public IEnumerable<ModelEntry> OfType(string modelType) => Entries.Where(entry => entry.ModelType == modelType);

    public static ModelCatalog Create(ServingOptions options, ILogger logger)
    {
        if (options.Models.Count == 0)
        {
            return new ModelCatalog(DemoModels.EnsureCreated(options.DataDirectory, logger));
        }

        return new ModelCatalog(options.Models.Select(model => new ModelEntry(model.Id, model.Path, ReadModelType(model.Path), model.OnnxFile, model.Dtype)).ToArray());
    }

    /// <summary>config.json's model_type; a folder without one cannot be served.</summary>
    public static string ReadModelType(string folder)
    {
        string path = Path.Combine(folder, "config.json");
        if (!File.Exists(path))
        {
            throw new InvalidOperationException($"{path}: not found; a model folder needs its config.json");
        }

        try
        {
            using JsonDocument json = JsonDocument.Parse(File.ReadAllBytes(path));
            return json.RootElement.TryGetProperty("model_type", out JsonElement type) && type.ValueKind == JsonValueKind.String
                ? type.GetString()!
                : throw new InvalidOperationException($"{path}: has no model_type string");
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"{path}: invalid JSON: {e.Message}", e);
        }
    }
}
