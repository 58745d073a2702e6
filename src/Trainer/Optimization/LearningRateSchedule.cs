namespace Serving.Trainer.Optimization;

/// <summary>
/// Linear warm-up from 0 to <see cref="Peak"/> over <see cref="WarmupSteps"/>, then cosine
/// decay to <see cref="Peak"/>·<see cref="FinalRatio"/> at <see cref="TotalSteps"/>.
/// </summary>
public sealed record LearningRateSchedule(double Peak, int WarmupSteps, int TotalSteps, double FinalRatio = 0.1)
{
    /// <summary>The rate of update <paramref name="step"/> (1-based).</summary>
    public double At(int step)
    {
        if (step <= WarmupSteps)
        {
            return Peak * step / WarmupSteps;
        }

        double progress = Math.Min(1.0, (double)(step - WarmupSteps) / Math.Max(1, TotalSteps - WarmupSteps));
        double cosine = 0.5 * (1 + Math.Cos(Math.PI * progress));
        return Peak * (FinalRatio + (1 - FinalRatio) * cosine);
    }
}
