using Serving.Runtime.Generation.Kv;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Generation.Kv;

public sealed class KvLayoutTests(TinyModelFixture fixture) : IClassFixture<TinyModelFixture>
{
    [Fact]
    public void SlidingLayersCountAtMostTheirWindow()
    {
        var layout = new KvLayout(fixture.Model.Signature, fixture.Config.SlidingWindow);
        // tiny: 2 global + 2 sliding layers, 2 KV heads × 16 floats = 128 bytes a slot, window 16.
        Assert.Equal(128, layout.SlotBytes);
        Assert.Equal(2, layout.NumTrimmedLayers);
        Assert.Equal(2 * 128 * (2 * 1900 + 2 * 15), layout.SequenceBytes(1900));
        Assert.Equal(2 * 128 * (2 * 10 + 2 * 10), layout.SequenceBytes(10));
    }
}
