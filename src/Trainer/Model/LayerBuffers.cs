namespace Serving.Trainer.Model;

/// <summary>
/// What one decoder layer keeps from its forward pass for the backward pass, for n = B·S rows.
/// Names follow <see cref="DecoderLayer"/>: a = input norm, q/k raw projections, qRot/kRot
/// normed and rotated heads, o = attention output projection, m = pre-MLP norm.
/// </summary>
internal sealed class LayerBuffers
{
    public LayerBuffers(int rows, int batch, int sequence, Dims dims)
    {
        Input = new float[rows * dims.Hidden];
        A = new float[rows * dims.Hidden];
        InputRms = new float[rows];
        Q = new float[rows * dims.QueryWidth];
        QRot = new float[rows * dims.QueryWidth];
        QRms = new float[rows * dims.QueryHeads];
        K = new float[rows * dims.KvWidth];
        KRot = new float[rows * dims.KvWidth];
        KRms = new float[rows * dims.KvHeads];
        V = new float[rows * dims.KvWidth];
        Probabilities = new float[batch * dims.QueryHeads * sequence * sequence];
        Attended = new float[rows * dims.QueryWidth];
        O = new float[rows * dims.Hidden];
        PostAttentionRms = new float[rows];
        Middle = new float[rows * dims.Hidden];
        M = new float[rows * dims.Hidden];
        PreMlpRms = new float[rows];
        Gate = new float[rows * dims.Intermediate];
        Up = new float[rows * dims.Intermediate];
        Activated = new float[rows * dims.Intermediate];
        Y = new float[rows * dims.Hidden];
        PostMlpRms = new float[rows];
    }

    public float[] Input { get; }
    public float[] A { get; }
    public float[] InputRms { get; }
    public float[] Q { get; }
    public float[] QRot { get; }
    public float[] QRms { get; }
    public float[] K { get; }
    public float[] KRot { get; }
    public float[] KRms { get; }
    public float[] V { get; }
    public float[] Probabilities { get; }
    public float[] Attended { get; }
    public float[] O { get; }
    public float[] PostAttentionRms { get; }
    public float[] Middle { get; }
    public float[] M { get; }
    public float[] PreMlpRms { get; }
    public float[] Gate { get; }
    public float[] Up { get; }
    public float[] Activated { get; }
    public float[] Y { get; }
    public float[] PostMlpRms { get; }
}

/// <summary>Gradient scratch shared by all layers: the backward pass visits one layer at a time.</summary>
internal sealed class BackwardScratch(int rows, int sequence, Dims dims)
{
    public float[] DMiddle { get; } = new float[rows * dims.Hidden];
    public float[] DHidden { get; } = new float[rows * dims.Hidden];
    public float[] DNormed { get; } = new float[rows * dims.Hidden];
    public float[] DQuery { get; } = new float[rows * dims.QueryWidth];
    /// <summary>dL/d(raw q or k projection): the query width holds either.</summary>
    public float[] DProjection { get; } = new float[rows * dims.QueryWidth];
    public float[] DAttended { get; } = new float[rows * dims.QueryWidth];
    public float[] DKey { get; } = new float[rows * dims.KvWidth];
    public float[] DValue { get; } = new float[rows * dims.KvWidth];
    public float[] DGate { get; } = new float[rows * dims.Intermediate];
    public float[] DUp { get; } = new float[rows * dims.Intermediate];
    public float[] DActivated { get; } = new float[rows * dims.Intermediate];
    public float[] Scores { get; } = new float[sequence * sequence];
}

/// <summary>The widths a layer needs, read once from the config.</summary>
internal readonly record struct Dims(int Hidden, int QueryHeads, int KvHeads, int HeadDim, int Intermediate)
{
    public int QueryWidth => QueryHeads * HeadDim;
    public int KvWidth => KvHeads * HeadDim;

    public static Dims Of(Serving.Runtime.Models.Gemma3.Gemma3Config c) =>
        new(c.HiddenSize, c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.IntermediateSize);
}
