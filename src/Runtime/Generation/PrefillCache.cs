namespace Serving.Runtime.Generation;

/// <summary>
/// A prefill call's outputs, shared by the sequences whose rows it holds until the decode batch
/// takes each row in. The last sequence to let go disposes the native tensors.
/// </summary>
internal sealed class PrefillCache(DecoderOutputs outputs, int references)
{
    private int _references = references;

    public DecoderOutputs Outputs { get; } = outputs;

    public void Release()
    {
        if (--_references == 0)
        {
            Outputs.Dispose();
        }
    }
}
