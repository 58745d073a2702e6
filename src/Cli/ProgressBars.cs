using Spectre.Console;

namespace Serving.Cli;

/// <summary>One progress bar on stderr (stdout stays for results) around a piece of work that reports (done, total).</summary>
internal static class ProgressBars
{
    public static T Run<T>(string label, Func<IProgress<(long Done, long Total)>, T> work)
    {
        T? result = default;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask task = context.AddTask(label, maxValue: 1);
                result = work(new SynchronousProgress(p => (task.MaxValue, task.Value) = (p.Total, p.Done)));
                task.Value = task.MaxValue;
            });
        return result!;
    }
}
