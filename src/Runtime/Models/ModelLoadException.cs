namespace Serving.Runtime.Models;

/// <summary>A model folder cannot be used; the message names the file at fault and why.</summary>
public sealed class ModelLoadException : Exception
{
    public ModelLoadException(string path, string message, Exception? inner = null)
        : base($"{path}: {message}", inner) => FilePath = path;

    public string FilePath { get; }
}
