using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation;

public sealed class SchedulerTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private Sequence Make(long id, long bytes) => new(id,
        new GenerationRequest { PromptIds = [2, 3], MaxTokens = 4, Sampling = SamplingParams.Greedy },
        new SequenceSampler(SamplingParams.Greedy, 1024, [2, 3], 0), fixture.Model.Tokenizer.CreateDetokenizer(), bytes);

    [Fact]
    public void AdmitsInArrivalOrderWhileMemoryLastsAndNeverSkipsTheHead()
    {
        var pool = new KvCachePool(100);
        var scheduler = new Scheduler(pool, maxQueueLength: 10, maxBatchSize: 10);
        Sequence a = Make(1, 60), big = Make(2, 50), small = Make(3, 10);
        Assert.True(scheduler.TryEnqueue([a, big, small]));

        scheduler.Admit();
        Assert.Equal([a], scheduler.Prefilling);
        Assert.Equal(2, scheduler.NumWaiting);
        Assert.Equal(60, pool.UsedBytes);

        pool.Release(a.ReservedBytes);
        scheduler.Prefilling.Clear();
        scheduler.Admit();
        Assert.Equal([big, small], scheduler.Prefilling);
        Assert.Equal(SequenceStatus.Prefilling, big.Status);
    }

    [Fact]
    public void TheQueueTakesAllOfABatchOrNone()
    {
        var scheduler = new Scheduler(new KvCachePool(100), maxQueueLength: 2, maxBatchSize: 10);
        Assert.False(scheduler.TryEnqueue([Make(1, 1), Make(2, 1), Make(3, 1)]));
        Assert.Equal(0, scheduler.NumWaiting);
        Assert.True(scheduler.TryEnqueue([Make(4, 1), Make(5, 1)]));
        Assert.False(scheduler.TryEnqueue([Make(6, 1)]));
    }

    [Fact]
    public void TheBatchSizeCapsAdmission()
    {
        var scheduler = new Scheduler(new KvCachePool(1000), maxQueueLength: 10, maxBatchSize: 2);
        scheduler.TryEnqueue([Make(1, 1), Make(2, 1), Make(3, 1)]);
        scheduler.Admit();
        Assert.Equal(2, scheduler.NumRunning);
        Assert.Equal(1, scheduler.NumWaiting);
    }

    [Fact]
    public void CancelledWaitingSequencesAreTakenOut()
    {
        var scheduler = new Scheduler(new KvCachePool(1000), maxQueueLength: 10, maxBatchSize: 10);
        Sequence keep = Make(1, 1), drop = Make(2, 1);
        scheduler.TryEnqueue([keep, drop]);
        drop.Cancel();
        var cancelled = new List<Sequence>();
        scheduler.TakeCancelledWaiting(cancelled);
        Assert.Equal([drop], cancelled);
        Assert.Equal(1, scheduler.NumWaiting);
    }
}
