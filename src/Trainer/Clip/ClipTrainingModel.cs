using Serving.Trainer.Layers;
using Serving.Trainer.Model;

namespace Serving.Trainer.Clip;

/// <summary>
/// Forward and backward of a CLIP dual encoder on image–caption pairs: both towers, then the
/// symmetric contrastive loss with the learned temperature. The embeddings it computes are
/// what the exported ONNX towers must reproduce.
/// </summary>
public sealed class ClipTrainingModel
{
    private readonly ClipTextTower _text;
    private readonly ClipVisionTower _vision;

    public ClipTrainingModel(ClipParameters parameters)
    {
        Parameters = parameters;
        _text = new ClipTextTower(parameters);
        _vision = new ClipVisionTower(parameters);
    }

    public ClipParameters Parameters { get; }

    /// <summary>Projected, unnormalised caption embeddings <c>[batch, projection]</c> of end-padded ids <c>[batch, length]</c>.</summary>
    public float[] EncodeTexts(int[] ids, int batch, int length) => _text.Forward(ids, batch, length);

    /// <summary>Projected, unnormalised image embeddings <c>[batch, projection]</c> of preprocessed pixels.</summary>
    public float[] EncodeImages(float[] pixels, int batch) => _vision.Forward(pixels, batch);

    /// <summary>The loss of a batch of pairs, adding every gradient (the caller zeroes them first).</summary>
    public double LossAndGradients(float[] pixels, int[] ids, int batch, int length)
    {
        int dim = Parameters.Config.ProjectionDim;
        float[] images = _vision.Forward(pixels, batch), texts = _text.Forward(ids, batch, length);
        float[] dImages = new float[images.Length], dTexts = new float[texts.Length];
        double loss = ContrastiveLoss.Forward(images, texts, batch, dim, Parameters.LogitScale.Value[0], dImages, dTexts, out double dScale);
        Parameters.LogitScale.Gradient[0] += (float)dScale;
        _vision.Backward(dImages);
        _text.Backward(dTexts);
        return loss;
    }

    public double Loss(float[] pixels, int[] ids, int batch, int length)
    {
        float[] images = _vision.Forward(pixels, batch), texts = _text.Forward(ids, batch, length);
        return ContrastiveLoss.Forward(images, texts, batch, Parameters.Config.ProjectionDim, Parameters.LogitScale.Value[0], [], [], out _);
    }
}
