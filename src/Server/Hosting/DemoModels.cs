using Serving.Runtime.Models.Clip;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Server.Hosting;

/// <summary>
/// The models served when configuration names none, so a fresh clone answers requests with no
/// download: the trained models that ship in the repository (copied beside the server at build):
/// <c>kjv-gemma3</c>, a small Gemma 3 trained on the King James Bible, and <c>shapes-clip</c>, a
/// small CLIP trained on the synthetic shapes world (the CLIP demo model); and <c>tiny</c> and
/// <c>clip-tiny</c>, random-weight models generated once into the data directory (for tests).
/// </summary>
public static class DemoModels
{
    /// <summary>The seed whose tiny model the compat tests also use.</summary>
    private const ulong TinySeed = 5;

    public const string TrainedId = "kjv-gemma3";

    public const string TrainedClipId = "shapes-clip";

    /// <summary>Where the build puts the committed trained model (Server.csproj copies models/kjv-gemma3).</summary>
    public static string TrainedFolder => Shipped(TrainedId);

    /// <summary>Where the build puts the committed trained CLIP (Server.csproj copies models/shapes-clip).</summary>
    public static string TrainedClipFolder => Shipped(TrainedClipId);

    public static IReadOnlyList<ModelEntry> EnsureCreated(string dataDirectory, ILogger logger)
    {
        var entries = new List<ModelEntry>();
        foreach (var (id, folder, type) in new[] { (TrainedId, TrainedFolder, Gemma3Config.ModelType), (TrainedClipId, TrainedClipFolder, ClipConfig.ModelType) })
        {
            if (File.Exists(Path.Combine(folder, "config.json")))
            {
                entries.Add(new ModelEntry(id, folder, type));
            }
            else
            {
                logger.LogWarning("The trained demo model {Id} is missing from {Folder}; not serving it", id, folder);
            }
        }

        entries.AddRange(CreateRandom(dataDirectory, logger));
        return entries;
    }

    private static string Shipped(string id) => Path.Combine(AppContext.BaseDirectory, "models", id);

    private static IReadOnlyList<ModelEntry> CreateRandom(string dataDirectory, ILogger logger)
    {
        string tiny = Path.Combine(dataDirectory, "models", "tiny");
        EnsureFolder(tiny, logger, "tiny", folder => Gemma3ModelWriter.WriteRandom(folder, Gemma3Presets.Tiny, TinySeed));
        string clip = Path.Combine(dataDirectory, "models", "clip-tiny");
        EnsureFolder(clip, logger, "clip-tiny", folder => ClipModelWriter.WriteRandom(folder, ClipPresets.Tiny, TinySeed));
        return [new ModelEntry("tiny", tiny, Gemma3Config.ModelType), new ModelEntry("clip-tiny", clip, ClipConfig.ModelType)];
    }

    /// <summary>
    /// Writes into a temporary sibling folder and renames it into place, so an interrupted
    /// start never leaves a half-written model that a later start would try to load.
    /// </summary>
    private static void EnsureFolder(string folder, ILogger logger, string id, Action<string> write)
    {
        if (Directory.Exists(folder))
        {
            return;
        }

        string temporary = folder + ".partial-" + Environment.ProcessId;
        if (Directory.Exists(temporary))
        {
            Directory.Delete(temporary, recursive: true);
        }

        write(temporary);
        try
        {
            Directory.Move(temporary, folder);
        }
        catch (IOException) when (Directory.Exists(folder))
        {
            // Another server process on the same data directory finished first; use its copy.
            Directory.Delete(temporary, recursive: true);
            return;
        }

        logger.LogInformation("Created the demo model '{Id}' in {Folder} (no Serving:Models configured)", id, folder);
    }
}
