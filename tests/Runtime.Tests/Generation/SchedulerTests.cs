using Serving.Runtime.Generation;
using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Generation.Sampling;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation;

/// <summary>The scheduler over a small block pool, without a model call: admission, budgets, preemption.</summary>
public sealed class SchedulerTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    private const int BlockTokens = 4;

    // tiny: 4 layers (2 global, 2 sliding of window 16), 128-byte slots: a block of 4 tokens is 1 KB.
    private KvCacheManager Pool(int blocks) =>
        new(new KvLayout(fixture.Model.Signature, fixture.Config.SlidingWindow), blocks * 2L * 128 * BlockTokens, BlockTokens);

    private Sequence Make(KvCacheManager kv, long id, int promptLength, int maxTokens = 4) => new(id,
        new GenerationRequest { PromptIds = Enumerable.Range(2, promptLength).ToArray(), MaxTokens = maxTokens, Sampling = SamplingParams.Greedy },
        new SequenceSampler(SamplingParams.Greedy, 1024, [2, 3], 0), fixture.Model.Tokenizer.CreateDetokenizer(), kv.NewSequence());

    private static Scheduler Scheduler(KvCacheManager kv, int maxQueueLength = 10, int maxBatchSize = 10, int budget = 512) =>
        new(kv, new EngineOptions { MaxQueueLength = maxQueueLength, MaxBatchSize = maxBatchSize, MaxPrefillTokensPerStep = budget }, prefixCaching: false,
            _ => int.MaxValue);

    [Fact]
    public void AdmitsInArrivalOrderWhileBlocksLastAndNeverSkipsTheHead()
    {
        using KvCacheManager kv = Pool(16);
        var scheduler = Scheduler(kv);
        // 8 tokens take 2 blocks in each of 4 layers; 12 tokens take 3.
        Sequence a = Make(kv, 1, 8), big = Make(kv, 2, 12), small = Make(kv, 3, 1);
        Assert.True(scheduler.TryEnqueue([a, big, small]));

        StepPlan plan = scheduler.Schedule();
        Assert.Equal([a], plan.Chunks.Select(c => c.Sequence));
        Assert.Equal(8, plan.Chunks[0].Count);
        Assert.True(plan.Chunks[0].Samples);
        Assert.Equal(2, scheduler.NumWaiting);
        Assert.Equal(8, kv.NumUsedBlocks);

        scheduler.Finish(a);
        plan = scheduler.Schedule();
        Assert.Equal([big, small], plan.Chunks.Select(c => c.Sequence));
        Assert.Equal(SequenceStatus.Running, big.Status);
    }

    [Fact]
    public void APromptLongerThanTheStepBudgetIsReadInChunks()
    {
        using KvCacheManager kv = Pool(64);
        var scheduler = Scheduler(kv, budget: 5);
        Sequence long_ = Make(kv, 1, 12);
        scheduler.TryEnqueue([long_]);
        int[] counts = new int[3];
        for (int step = 0; step < 3; step++)
        {
            StepPlan plan = scheduler.Schedule();
            counts[step] = plan.Chunks[0].Count;
            Assert.Equal(step == 2, plan.Chunks[0].Samples);
            scheduler.Advance(plan);
        }

        Assert.Equal([5, 5, 2], counts);
    }

    [Fact]
    public void WhenThePoolRunsOutTheMostRecentSequenceIsPreemptedAndRequeuedFirst()
    {
        using KvCacheManager kv = Pool(16);
        var scheduler = Scheduler(kv);
        Sequence first = Make(kv, 1, 8), second = Make(kv, 2, 8), third = Make(kv, 3, 1);
        scheduler.TryEnqueue([first, second]);
        scheduler.Advance(scheduler.Schedule());  // both prompts: 8 + 8 blocks, the pool is full
        first.Append(5);
        second.Append(5);
        scheduler.TryEnqueue([third]);

        StepPlan plan = scheduler.Schedule();  // the first's 9th token needs a block in each layer
        Assert.Equal([first], plan.Chunks.Select(c => c.Sequence));
        Assert.Equal(1, scheduler.NumPreemptions);
        Assert.Equal(SequenceStatus.Waiting, second.Status);
        Assert.Equal(0, second.Length);
        Assert.Equal(2, scheduler.NumWaiting);
        scheduler.Advance(plan);

        scheduler.Finish(first);
        plan = scheduler.Schedule();
        // The preempted sequence is recomputed first: its prompt and the token it had generated.
        Assert.Equal(second, plan.Chunks[0].Sequence);
        Assert.Equal(9, plan.Chunks[0].Count);
    }

    [Fact]
    public void TheQueueTakesAllOfABatchOrNone()
    {
        using KvCacheManager kv = Pool(100);
        var scheduler = Scheduler(kv, maxQueueLength: 2);
        Assert.False(scheduler.TryEnqueue([Make(kv, 1, 1), Make(kv, 2, 1), Make(kv, 3, 1)]));
        Assert.Equal(0, scheduler.NumWaiting);
        Assert.True(scheduler.TryEnqueue([Make(kv, 4, 1), Make(kv, 5, 1)]));
        Assert.False(scheduler.TryEnqueue([Make(kv, 6, 1)]));
    }

    [Fact]
    public void TheBatchSizeCapsAdmission()
    {
        using KvCacheManager kv = Pool(100);
        var scheduler = Scheduler(kv, maxBatchSize: 2);
        scheduler.TryEnqueue([Make(kv, 1, 1), Make(kv, 2, 1), Make(kv, 3, 1)]);
        scheduler.Schedule();
        Assert.Equal(2, scheduler.NumRunning);
        Assert.Equal(1, scheduler.NumWaiting);
    }

    [Fact]
    public void CancelledWaitingSequencesAreTakenOut()
    {
        using KvCacheManager kv = Pool(100);
        var scheduler = Scheduler(kv);
        Sequence keep = Make(kv, 1, 1), drop = Make(kv, 2, 1);
        scheduler.TryEnqueue([keep, drop]);
        drop.Cancel();
        var cancelled = new List<Sequence>();
        scheduler.TakeCancelledWaiting(cancelled);
        Assert.Equal([drop], cancelled);
        Assert.Equal(1, scheduler.NumWaiting);
    }
}
