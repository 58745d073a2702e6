using Serving.Runtime.Models.Clip;
using Serving.Runtime.Models.Gemma3;

namespace Serving.Server.Hosting;

/// <summary>
/// The models served when configuration names none, so a fresh clone answers requests with no
/// download: <c>kjv-gemma3</c>, the small Gemma 3 trained on the King James Bible that ships in
/// the repository (models/kjv-gemma3, copied beside the server at build), and <c>tiny</c> and
/// <c>clip-tiny</c>, random-weight models generated once into the data directory.
/// </summary>
public static class DemoModels
{
    /// <summary>The seed whose tiny model the compat tests also use.</summary>
    private const ulong TinySeed = 5;

    public const string TrainedId = "kjv-gemma3";

    /// <summary>Where the build puts the committed trained model (Server.csproj copies models/kjv-gemma3).</summary>
    public static string TrainedFolder => Path.Combine(AppContext.BaseDirectory, "models", TrainedId);

    public static IReadOnlyList<ModelEntry> EnsureCreated(string dataDirectory, ILogger logger)
    {
        var entries = new List<ModelEntry>();
        if (File.Exists(Path.Combine(TrainedFolder, "config.json")))
        {
            entries.Add(new ModelEntry(TrainedId, TrainedFolder, Gemma3Config.ModelType));
        }
        else
        {
            logger.LogWarning("The trained demo model is missing from {Folder}; serving the random-weight demo models only", TrainedFolder);
        }

        entries.AddRange(CreateRandom(dataDirectory, logger));
        return entries;
    }

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
