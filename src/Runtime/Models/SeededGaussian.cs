namespace Serving.Runtime.Models;

/// <summary>
/// Seeded N(0, std²) values for generated weights. Each tensor has its own stream, derived
/// from the seed and the tensor's name, so tensors can be generated in any order or in
/// parallel with the same bytes. Our own generator (SplitMix64 + Box–Muller) keeps the bytes
/// stable across .NET versions, which <see cref="Random"/> does not promise.
/// </summary>
/// <remarks>
/// Each 65,536-value chunk starts from its own hashed state, (tensor seed, chunk index) through
/// the SplitMix64 finalizer. Seeding chunk c at <c>tensorSeed + c·γ</c> (γ the generator's own
/// increment) made chunk c the stream of chunk c − 1 one step later, and every Gaussian takes two
/// steps: chunk c was chunk c − 2 shifted by one value, and the 270m embedding had 0.08% distinct
/// values.
/// </remarks>
public static class SeededGaussian
{
    public static float[] Sample(string name, long count, double std, ulong seed, float mean = 0f)
    {
        var values = new float[count];
        const int ChunkSize = 1 << 16;
        int chunks = (values.Length + ChunkSize - 1) / ChunkSize;
        ulong tensorSeed = seed ^ Fnv1a(name);
        Parallel.For(0, chunks, chunk =>
        {
            var rng = new SplitMix64(ChunkState(tensorSeed, chunk));
            int end = Math.Min(values.Length, (chunk + 1) * ChunkSize);
            for (int i = chunk * ChunkSize; i < end; i++)
            {
                values[i] = mean + (float)(rng.NextGaussian() * std);
            }
        });
        return values;
    }

    /// <summary>
    /// A chunk's start state: two finalizer rounds over (tensor seed, chunk), so neighbouring
    /// chunks start at unrelated points of the 2⁶⁴ cycle (streams of 2¹⁷ steps overlap with
    /// probability ~2⁻⁴⁶ per pair).
    /// </summary>
    private static ulong ChunkState(ulong tensorSeed, int chunk) =>
        Mix(tensorSeed ^ Mix((ulong)chunk + 0x632BE59BD9B4E019UL));

    private static ulong Mix(ulong z)
    {
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    private static ulong Fnv1a(string text)
    {
        ulong hash = 14695981039346656037UL;
        foreach (char c in text)
        {
            hash = (hash ^ c) * 1099511628211UL;
        }

        return hash;
    }

    private struct SplitMix64(ulong state)
    {
        private ulong _state = state;

        private ulong Next()
        {
            return Mix(_state += 0x9E3779B97F4A7C15UL);
        }

        /// <summary>Uniform in (0, 1]: never 0, so the logarithm below is finite.</summary>
        private double NextUnit() => ((Next() >> 11) + 1) * (1.0 / (1UL << 53));

        public double NextGaussian() =>
            Math.Sqrt(-2.0 * Math.Log(NextUnit())) * Math.Cos(2.0 * Math.PI * NextUnit());
    }
}
