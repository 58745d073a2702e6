using Serving.Trainer.Layers;
using static Serving.Trainer.Tests.GradientCheck;

namespace Serving.Trainer.Tests.Layers;

/// <summary>Each layer's backward pass against finite differences of L = ⟨forward(x), r⟩.</summary>
public class LayerGradientTests
{
    private const int Rows = 6, Dim = 16;

    [Fact]
    public void RmsNorm_InputAndWeight()
    {
        float[] x = Random(Rows * Dim, 1), w = Random(Dim, 2, 0.1), r = Random(Rows * Dim, 3);
        double Objective()
        {
            var y = new float[x.Length];
            RmsNorm.Forward(x, w, 1e-6f, y, new float[Rows]);
            return Dot(y, r);
        }

        var rms = new float[Rows];
        RmsNorm.Forward(x, w, 1e-6f, new float[x.Length], rms);
        float[] dx = new float[x.Length], dw = new float[Dim];
        RmsNorm.Backward(x, w, rms, r, dx, false, dw);

        AssertMatches("dx", x, dx, Objective);
        AssertMatches("dw", w, dw, Objective);
    }

    [Fact]
    public void RmsNorm_AccumulatesIntoDx()
    {
        float[] x = Random(Rows * Dim, 1), w = Random(Dim, 2, 0.1), r = Random(Rows * Dim, 3);
        var rms = new float[Rows];
        RmsNorm.Forward(x, w, 1e-6f, new float[x.Length], rms);
        float[] fresh = new float[x.Length], accumulated = Enumerable.Repeat(1f, x.Length).ToArray();
        RmsNorm.Backward(x, w, rms, r, fresh, false, new float[Dim]);
        RmsNorm.Backward(x, w, rms, r, accumulated, true, new float[Dim]);

        Assert.All(Enumerable.Range(0, x.Length), i => Assert.Equal(fresh[i] + 1f, accumulated[i], 5));
    }

    [Fact]
    public void Linear_InputAndWeight()
    {
        const int Out = 12;
        float[] x = Random(Rows * Dim, 4), w = Random(Dim * Out, 5, 0.25), r = Random(Rows * Out, 6);
        double Objective()
        {
            var y = new float[Rows * Out];
            Linear.Forward(x, w, Rows, Dim, Out, y);
            return Dot(y, r);
        }

        float[] dx = new float[x.Length], dw = new float[w.Length];
        Linear.Backward(x, w, r, Rows, Dim, Out, dx, false, dw);

        AssertMatches("dx", x, dx, Objective);
        AssertMatches("dw", w, dw, Objective);
    }

    [Fact]
    public void Linear_MatchesTheInOutLayout()
    {
        // W stored [in, out]: y[o] = Σ_i x[i]·W[i, o]. x = [1, 2], W = [[1, 2, 3], [4, 5, 6]].
        var y = new float[3];
        Linear.Forward([1f, 2f], [1f, 2f, 3f, 4f, 5f, 6f], 1, 2, 3, y);

        Assert.Equal([9f, 12f, 15f], y);
    }

    [Fact]
    public void GeGlu_GateAndUp()
    {
        float[] gate = Random(Rows * Dim, 7, 2.0), up = Random(Rows * Dim, 8), r = Random(Rows * Dim, 9);
        double Objective()
        {
            var h = new float[gate.Length];
            GeGlu.Forward(gate, up, h);
            return Dot(h, r);
        }

        float[] dGate = new float[gate.Length], dUp = new float[up.Length];
        GeGlu.Backward(gate, up, r, dGate, dUp);

        AssertMatches("dgate", gate, dGate, Objective);
        AssertMatches("dup", up, dUp, Objective);
    }

    [Fact]
    public void Embedding_TableWithRepeatedTokens()
    {
        const int Vocab = 10;
        int[] ids = [3, 7, 3, 0, 9, 3];
        float[] table = Random(Vocab * Dim, 10), r = Random(ids.Length * Dim, 11);
        double Objective()
        {
            var y = new float[ids.Length * Dim];
            Embedding.Forward(table, ids, Dim, 4f, y);
            return Dot(y, r);
        }

        var dTable = new float[table.Length];
        Embedding.Backward(ids, r, Dim, 4f, dTable);

        AssertMatches("dtable", table, dTable, Objective);
    }

    [Fact]
    public void CrossEntropy_Logits()
    {
        const int Vocab = 20;
        float[] logits = Random(Rows * Vocab, 12, 3.0);
        int[] targets = [1, 19, 0, 5, 5, 12];
        var dLogits = new float[logits.Length];
        double loss = CrossEntropy.Forward(logits, targets, Vocab, dLogits);

        AssertMatches("dlogits", logits, dLogits, () => CrossEntropy.Forward(logits, targets, Vocab, null), epsilon: 1e-3);
        Assert.True(loss > 0);
    }

    [Fact]
    public void CrossEntropy_OfUniformLogitsIsLogVocab()
    {
        double loss = CrossEntropy.Forward(new float[2 * 50], [3, 49], 50, null);

        Assert.Equal(Math.Log(50), loss, 6);
    }
}
