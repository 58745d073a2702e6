namespace Serving.Runtime.Debiasing;

/// <summary>How a concept's bias is removed; the variation point between WRING and its baseline.</summary>
public enum DebiasMethod
{
    /// <summary><c>v − P v + ‖P v‖ · w</c>: a rotation inside col(A); norm and angles to col(A)⊥ kept.</summary>
    Wring,
    /// <summary><c>v − P v</c>: orthogonal projection (Chuang et al. 2023), shrinks v and so amplifies other biases.</summary>
    Projection,
}

/// <summary>
/// Removes the bias of one or more concepts from embeddings, applied in order (each
/// concept's transform to the previous one's output). For concepts with orthogonal spans
/// the order does not matter; otherwise the later concept's span is exactly debiased.
/// </summary>
public sealed class DebiasTransform
{
    private readonly IReadOnlyList<ConceptSubspace> _concepts;

    public DebiasTransform(DebiasMethod method, IReadOnlyList<ConceptSubspace> concepts)
    {
        if (concepts.Count == 0 || concepts.Any(c => c.Dimension != concepts[0].Dimension))
        {
            throw new ArgumentException("at least one concept, all of the same dimension");
        }

        Method = method;
        _concepts = concepts;
    }

    public DebiasMethod Method { get; }

    public int Dimension => _concepts[0].Dimension;

    public float[] Apply(ReadOnlySpan<float> vector)
    {
        var result = vector.ToArray();
        ApplyInPlace(result);
        return result;
    }

    /// <summary>Transforms <paramref name="vector"/> in place.</summary>
    public void ApplyInPlace(Span<float> vector)
    {
        if (vector.Length != Dimension)
        {
            throw new ArgumentException($"the vector has {vector.Length} values, the concepts {Dimension}");
        }

        double[] projection = new double[Dimension];
        foreach (ConceptSubspace concept in _concepts)
        {
            double norm = concept.Project(vector, projection);
            float[] w = concept.Equidistant;
            for (int k = 0; k < vector.Length; k++)
            {
                double rotated = vector[k] - projection[k];
                if (Method == DebiasMethod.Wring)
                {
                    rotated += norm * w[k];
                }

                vector[k] = (float)rotated;
            }
        }
    }
}
