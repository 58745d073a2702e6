using Serving.Runtime.Quantization;

namespace Serving.Runtime.Tests.Quantization;

public sealed class BlockQuantizerTests
{
    private static float[] Random(int count, int seed)
    {
        var random = new Random(seed);
        return [.. Enumerable.Range(0, count).Select(_ => (float)(random.NextDouble() * 2 - 1) * (1 + random.Next(4)))];
    }

    [Theory]
    [InlineData(4, 32, true)]
    [InlineData(4, 32, false)]
    [InlineData(8, 32, true)]
    [InlineData(8, 16, false)]
    [InlineData(4, 64, true)]
    public void DequantizedWeightsAreWithinHalfAStepOfTheirBlock(int bits, int blockSize, bool symmetric)
    {
        const int N = 7, K = 100; // K not a multiple of the block: the last block is padded
        float[] weights = Random(N * K, seed: bits + blockSize);
        var spec = new BlockSpec(bits, blockSize, symmetric);
        QuantizedMatrix matrix = BlockQuantizer.Quantize(weights, N, K, spec);
        float[] restored = BlockQuantizer.Dequantize(matrix);

        Assert.Equal(N * spec.Blocks(K) * spec.BlobSize, matrix.Data.Length);
        Assert.Equal(symmetric, matrix.ZeroPoints is null);
        for (int n = 0; n < N; n++)
        {
            for (int k = 0; k < K; k++)
            {
                float step = MathF.Abs(matrix.Scales[n * matrix.KBlocks + k / blockSize]);
                float error = MathF.Abs(restored[n * K + k] - weights[n * K + k]);
                // Symmetric 4-bit (16 levels, scale = extreme / −8) clamps only at the top level,
                // weights opposite the extreme and beyond 7/8 of it: by less than one step.
                bool clamped = bits == 4 && symmetric && matrix.Level(n, k) == 15;
                float bound = step * (clamped ? 1f : 0.5f) * (1 + 1e-5f);
                Assert.True(error <= bound, $"bits {bits}: ({n}, {k}) off by {error}, step {step}");
            }
        }
    }

    [Fact]
    public void FourBitLevelsArePackedLowNibbleFirstAlongK()
    {
        // One row of 32 weights, symmetric: the extreme −8 gives scale = −8/−8 = 1, level = w + 8.
        float[] row = [.. Enumerable.Range(0, 32).Select(i => (float)((i % 16) - 8))];
        QuantizedMatrix matrix = BlockQuantizer.Quantize(row, 1, 32, new BlockSpec(4, 32, Symmetric: true));

        Assert.Equal(1f, matrix.Scales[0]);
        Assert.Equal(16, matrix.Data.Length);
        Assert.Equal((byte)(0 | 1 << 4), matrix.Data[0]); // w = −8, −7 → levels 0, 1
        Assert.Equal((byte)(14 | 15 << 4), matrix.Data[7]); // k = 14, 15: w = 6, 7
    }

    [Fact]
    public void SymmetricFourBitMapsTheLargestMagnitudeToTheLowestLevelWithASignedScale()
    {
        // A positive extreme gets a negative scale (2 / −8): 2 → level 0, −1.75 → level 8 + 7 = 15, the top.
        float[] row = [2f, -1.75f, 1f, -2f * 15 / 16, .. new float[28]];
        QuantizedMatrix matrix = BlockQuantizer.Quantize(row, 1, 32, new BlockSpec(4, 32, Symmetric: true));
        float[] restored = BlockQuantizer.Dequantize(matrix);

        Assert.Equal(-0.25f, matrix.Scales[0]);
        Assert.Equal(0, matrix.Level(0, 0));
        Assert.Equal(2f, restored[0]); // the extreme is exact
        Assert.Equal(-1.75f, restored[1]); // level 15 = 8 + 7
        Assert.Equal(1f, restored[2]);
        Assert.Equal(-1.75f, restored[3]); // −1.875 clamped to the top level, by half a step
    }

    [Fact]
    public void TransposedInputQuantizesTheColumnsOfAMatMulWeight()
    {
        const int K = 64, N = 3;
        float[] weight = Random(K * N, seed: 5); // [K, N], MatMul's right operand
        var spec = new BlockSpec(8, 32, Symmetric: true);
        float[] columns = [.. Enumerable.Range(0, N * K).Select(i => weight[(i % K) * N + i / K])];

        QuantizedMatrix transposed = BlockQuantizer.QuantizeTransposed(weight, K, N, spec);
        Assert.Equal(BlockQuantizer.Quantize(columns, N, K, spec).Data, transposed.Data);
    }

    [Fact]
    public void AZeroBlockDequantizesToZeros()
    {
        foreach (bool symmetric in new[] { true, false })
        {
            QuantizedMatrix matrix = BlockQuantizer.Quantize(new float[64], 2, 32, new BlockSpec(4, 16, symmetric));
            Assert.All(BlockQuantizer.Dequantize(matrix), value => Assert.Equal(0f, value));
        }
    }
}
