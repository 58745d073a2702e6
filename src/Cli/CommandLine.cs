using System.CommandLine;
using System.CommandLine.Parsing;
using Microsoft.Extensions.Logging;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Models;

namespace Serving.Cli;

/// <summary>Exit codes and the one place where errors become messages on stderr.</summary>
internal static class CommandLine
{
    public const int Ok = 0;
    public const int Failed = 1;
    public const int BadArguments = 2;

    /// <summary>Log lines on stderr only: stdout carries results (one JSON object with --json).</summary>
    public static ILoggerFactory StderrLogging() => LoggerFactory.Create(builder => builder
        .SetMinimumLevel(LogLevel.Information)
        .AddSimpleConsole(options => options.SingleLine = true)
        .AddConsole(options => options.LogToStandardErrorThreshold = LogLevel.Trace));

    public static int Run(RootCommand root, string[] args)
    {
        ParseResult parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            foreach (ParseError error in parsed.Errors)
            {
                Console.Error.WriteLine($"error: {error.Message}");
            }

            Console.Error.WriteLine("Run 'serving --help' for usage.");
            return BadArguments;
        }

        try
        {
            return parsed.Invoke(new InvocationConfiguration { EnableDefaultExceptionHandler = false });
        }
        catch (UsageException e)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return BadArguments;
        }
        catch (ModelLoadException e)
        {
            // Every model-folder error names its file: the argument pointed at a bad folder.
            Console.Error.WriteLine($"error: cannot load the model: {e.Message}");
            return BadArguments;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or OnnxRuntimeException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return Failed;
        }
    }
}

/// <summary>An argument value that parses but cannot be used; exit code 2.</summary>
internal sealed class UsageException(string message) : Exception(message);
