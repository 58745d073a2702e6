using Spectre.Console;

namespace Serving.Cli;

/// <summary>One progress bar on stderr (stdout stays for results) around a piece of work that reports (done, total).</summary>
internal static class ProgressBars
{
    public static T Run<T>(string label, Func<IProgress<(long Done, long Total)>, T> work) =>
        Run([label], progress => work(progress[0]));

    /// <summary>One bar per stage of the work, in order (a stage the work skips stays at 0).</summary>
    public static T Run<T>(string[] labels, Func<IProgress<(long Done, long Total)>[], T> work)
    {
        T? result = default;
        var console = AnsiConsole.Create(new AnsiConsoleSettings { Out = new AnsiConsoleOutput(Console.Error) });
        console.Progress()
            .Columns(new TaskDescriptionColumn(), new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(context =>
            {
                ProgressTask[] tasks = [.. labels.Select(label => context.AddTask(label, maxValue: 1))];
                result = work([.. tasks.Select(task => (IProgress<(long Done, long Total)>)new SynchronousProgress(p => (task.MaxValue, task.Value) = (p.Total, p.Done)))]);
                tasks[^1].Value = tasks[^1].MaxValue;
            });
        return result!;
    }
}
