using Serving.Runtime.Models.Gemma3;

namespace Serving.Server.Hosting;

/// <summary>
/// The models served when configuration names none: generated once into the data directory,
/// so a fresh clone answers requests with no download.
/// </summary>
public static class DemoModels
{
    /// <summary>The seed whose tiny model the compat tests also use.</summary>
    private const ulong TinySeed = 5;

    public static IReadOnlyList<ModelEntry> EnsureCreated(string dataDirectory, ILogger logger)
    {
        string tiny = Path.Combine(dataDirectory, "models", "tiny");
        EnsureFolder(tiny, logger, "tiny", folder => Gemma3ModelWriter.WriteRandom(folder, Gemma3Presets.Tiny, TinySeed));
        return [new ModelEntry("tiny", tiny, Gemma3Config.ModelType)];
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
