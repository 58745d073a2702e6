namespace Serving.Runtime.Debiasing;

/// <summary>The retrieval bias measures of this line of work (REFERENCE §2).</summary>
public static class BiasMetrics
{
    /// <summary>
    /// MaxSkew: max over groups of log(p_retrieved / p_prior); 0 when the retrieved set has the
    /// prior's proportions. A group absent from the retrieved set counts with a floor of
    /// 1/(2k) so the logarithm stays finite.
    /// </summary>
    public static double MaxSkew(IReadOnlyList<int> retrievedGroups, IReadOnlyList<double> prior)
    {
        double[] observed = Proportions(retrievedGroups, prior.Count);
        double floor = 1.0 / (2 * Math.Max(1, retrievedGroups.Count));
        return Enumerable.Range(0, prior.Count).Max(g => Math.Log(Math.Max(observed[g], floor) / prior[g]));
    }

    /// <summary>KL(p_retrieved ‖ p_prior), natural log; groups absent from the retrieved set add 0.</summary>
    public static double KlToPrior(IReadOnlyList<int> retrievedGroups, IReadOnlyList<double> prior)
    {
        double[] observed = Proportions(retrievedGroups, prior.Count);
        double kl = 0;
        for (int g = 0; g < prior.Count; g++)
        {
            if (observed[g] > 0)
            {
                kl += observed[g] * Math.Log(observed[g] / prior[g]);
            }
        }

        return kl;
    }

    /// <summary>Bias of v between two groups: cos(v, c₁) − cos(v, c₂).</summary>
    public static double GroupBias(ReadOnlySpan<float> v, ReadOnlySpan<float> first, ReadOnlySpan<float> second) =>
        Cosine(v, first) - Cosine(v, second);

    public static double Cosine(ReadOnlySpan<float> a, ReadOnlySpan<float> b) =>
        System.Numerics.Tensors.TensorPrimitives.CosineSimilarity(a, b);

    private static double[] Proportions(IReadOnlyList<int> groups, int count)
    {
        var proportions = new double[count];
        foreach (int group in groups)
        {
            proportions[group] += 1.0 / groups.Count;
        }

        return proportions;
    }
}
