namespace Serving.Runtime.Tests;

/// <summary>Waits for an expected event; the patience is generous, so a slow machine never fails a test that is right.</summary>
public static class Waiting
{
    public static async Task Until(Func<Task<bool>> condition, TimeSpan? patience = null)
    {
        TimeSpan limit = patience ?? TimeSpan.FromSeconds(60);
        DateTime deadline = DateTime.UtcNow + limit;
        while (!await condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"not within {limit.TotalSeconds} s");
            await Task.Delay(20);
        }
    }
}
