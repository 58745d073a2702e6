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
                float step = matrix.Scales[n * matrix.KBlocks + k / blockSize];
                float error = MathF.Abs(restored[n * K + k] - weights[n * K + k]);
                Assert.True(error <= step * 0.5f * (1 + 1e-5f), $"bits {bits}: ({n}, {k}) off by {error}, step {step}");
            }
        }
    }

    [Fact]
    public void FourBitLevelsArePackedLowNibbleFirstAlongK()
    {
        // One row of 32 weights, symmetric: scale = 7/7 = 1, level = w + 8.
        float[] row = [.. Enumerable.Range(0, 32).Select(i => (float)((i % 15) - 7))];
        QuantizedMatrix matrix = BlockQuantizer.Quantize(row, 1, 32, new BlockSpec(4, 32, Symmetric: true));

        Assert.Equal(1f, matrix.Scales[0]);
        Assert.Equal(16, matrix.Data.Length);
        Assert.Equal((byte)((0 + 1) | (1 + 1) << 4), matrix.Data[0]); // w = −7, −6 → levels 1, 2
        Assert.Equal((byte)(15 | 1 << 4), matrix.Data[7]); // k = 14, 15: w = 7, −7
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
