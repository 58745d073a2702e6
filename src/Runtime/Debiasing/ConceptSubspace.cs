namespace Serving.Runtime.Debiasing;

/// <summary>
/// The span of a concept's group directions c_1..c_m (REFERENCE §2): <c>A = [c_1 … c_m]</c>,
/// the projection <c>P v = A (AᵀA)⁻¹ Aᵀ v</c>, and the unit vector <c>w ∝ A (AᵀA)⁻¹ 1</c> in
/// col(A) at equal cosine to every group. m is small (2 for a binary concept), so the m×m
/// Gram inverse is computed once by Gauss–Jordan in doubles.
/// </summary>
public sealed class ConceptSubspace
{
    private readonly double[][] _directions;
    private readonly double[,] _gramInverse;

    private ConceptSubspace(double[][] directions, double[,] gramInverse, float[] equidistant)
    {
        _directions = directions;
        _gramInverse = gramInverse;
        Equidistant = equidistant;
    }

    public int Dimension => _directions[0].Length;

    public int Groups => _directions.Length;

    /// <summary>w: unit length, in col(A), equal cosine to every group direction.</summary>
    public float[] Equidistant { get; }

    /// <summary>Builds the subspace of ≥ 2 linearly independent group directions (normalised here).</summary>
    public static ConceptSubspace Create(IReadOnlyList<float[]> groups)
    {
        if (groups.Count < 2)
        {
            throw new ArgumentException("a concept needs at least two groups");
        }

        int d = groups[0].Length;
        if (groups.Any(g => g.Length != d))
        {
            throw new ArgumentException("every group direction must have the same dimension");
        }

        double[][] a = [.. groups.Select(Unit)];
        int m = a.Length;
        var gram = new double[m, m];
        for (int i = 0; i < m; i++)
        {
            for (int j = 0; j < m; j++)
            {
                gram[i, j] = Dot(a[i], a[j]);
            }
        }

        double[,] inverse = Invert(gram);
        var w = new double[d];
        for (int i = 0; i < m; i++)
        {
            double coefficient = 0;
            for (int j = 0; j < m; j++)
            {
                coefficient += inverse[i, j];
            }

            for (int k = 0; k < d; k++)
            {
                w[k] += coefficient * a[i][k];
            }
        }

        double norm = Math.Sqrt(Dot(w, w));
        return new ConceptSubspace(a, inverse, [.. w.Select(v => (float)(v / norm))]);
    }

    /// <summary>Writes P v into <paramref name="projection"/> and returns ‖P v‖.</summary>
    public double Project(ReadOnlySpan<float> v, Span<double> projection)
    {
        int m = _directions.Length;
        Span<double> dots = stackalloc double[m];
        for (int i = 0; i < m; i++)
        {
            double sum = 0;
            for (int k = 0; k < v.Length; k++)
            {
                sum += _directions[i][k] * v[k];
            }

            dots[i] = sum;
        }

        projection.Clear();
        for (int i = 0; i < m; i++)
        {
            double alpha = 0;
            for (int j = 0; j < m; j++)
            {
                alpha += _gramInverse[i, j] * dots[j];
            }

            for (int k = 0; k < projection.Length; k++)
            {
                projection[k] += alpha * _directions[i][k];
            }
        }

        double norm = 0;
        foreach (double value in projection)
        {
            norm += value * value;
        }

        return Math.Sqrt(norm);
    }

    private static double[] Unit(float[] v)
    {
        double norm = Math.Sqrt(v.Sum(x => (double)x * x));
        if (norm == 0)
        {
            throw new ArgumentException("a group direction is the zero vector");
        }

        return [.. v.Select(x => x / norm)];
    }

    private static double Dot(double[] a, double[] b)
    {
        double sum = 0;
        for (int i = 0; i < a.Length; i++)
        {
            sum += a[i] * b[i];
        }

        return sum;
    }

    /// <summary>Partial pivoting: brings the row with the largest entry in <paramref name="column"/> up to it.</summary>
    private static void SwapInLargestPivot(double[,] a, double[,] inverse, int column)
    {
        int n = a.GetLength(0), pivot = column;
        for (int row = column + 1; row < n; row++)
        {
            if (Math.Abs(a[row, column]) > Math.Abs(a[pivot, column]))
            {
                pivot = row;
            }
        }

        // Unit directions: a Gram pivot this small means two groups point the same way (cos > 0.999999).
        if (Math.Abs(a[pivot, column]) < 1e-6)
        {
            throw new ArgumentException("the group directions are linearly dependent (two groups point the same way)");
        }

        for (int k = 0; k < n; k++)
        {
            (a[column, k], a[pivot, k]) = (a[pivot, k], a[column, k]);
            (inverse[column, k], inverse[pivot, k]) = (inverse[pivot, k], inverse[column, k]);
        }
    }

    private static double[,] Invert(double[,] matrix)
    {
        int n = matrix.GetLength(0);
        var a = (double[,])matrix.Clone();
        var inverse = new double[n, n];
        for (int i = 0; i < n; i++)
        {
            inverse[i, i] = 1;
        }

        for (int column = 0; column < n; column++)
        {
            SwapInLargestPivot(a, inverse, column);

            double scale = a[column, column];
            for (int k = 0; k < n; k++)
            {
                a[column, k] /= scale;
                inverse[column, k] /= scale;
            }

            for (int row = 0; row < n; row++)
            {
                double factor = a[row, column];
                if (row == column || factor == 0)
                {
                    continue;
                }

                for (int k = 0; k < n; k++)
                {
                    a[row, k] -= factor * a[column, k];
                    inverse[row, k] -= factor * inverse[column, k];
                }
            }
        }

        return inverse;
    }
}
