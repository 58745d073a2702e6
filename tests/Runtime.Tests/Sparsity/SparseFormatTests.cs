using System.Numerics;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Tests.Sparsity;

public sealed class SparseFormatTests
{
    [Theory]
    [InlineData(4, 1)]
    [InlineData(7, 5)]
    [InlineData(37, 70)]
    [InlineData(640, 48)]
    public void EveryMaskKeepsExactlyTwoOfFour(int k, int n)
    {
        PackedWeight packed = SparseFormat.Pack(SparseMatMulOpTests.Random(k * n, seed: k), k, n);
        for (int column = 0; column < n; column++)
        {
            for (int g = 0; g < packed.Groups; g++)
            {
                Assert.Equal(2, BitOperations.PopCount((uint)SparseFormat.Nibble(packed, column, g)));
            }

            if (packed.Groups % 2 == 1)
            {
                Assert.Equal(0, packed.Masks[column * packed.MaskStride + packed.Groups / 2] >> 4);
            }
        }
    }

    [Theory]
    [InlineData(16, 3)]
    [InlineData(37, 11)]
    public void UnpackThenPackRoundTrips(int k, int n)
    {
        PackedWeight packed = SparseFormat.Pack(SparseMatMulOpTests.Random(k * n, seed: n), k, n);
        PackedWeight again = SparseFormat.Pack(SparseFormat.Unpack(packed), k, n);
        Assert.Equal(packed.Values, again.Values);
        Assert.Equal(packed.Masks, again.Masks);
    }

    [Fact]
    public void MagnitudeKeepsTheTwoLargestOfEachGroupPerOutputColumn()
    {
        // [K = 4, N = 2]: column 0 = [1, -5, 3, 0.5], column 1 = [4, 0, 0, -4].
        float[] dense = [1, 4, -5, 0, 3, 0, 0.5f, -4];
        PackedWeight packed = SparseFormat.Pack(dense, 4, 2);
        Assert.Equal([-5f, 3f, 4f, -4f], packed.Values);
        Assert.Equal([0b0110, 0b1001], packed.Masks);
        Assert.Equal([0, 4, -5, 0, 3, 0, 0, -4], SparseFormat.Unpack(packed));
    }

    [Fact]
    public void FeatureScaleDecidesTheKeptWeights()
    {
        // Wanda: |W| · ‖X‖. Feature 3 has small weights but a large activation norm.
        float[] dense = [1, 0.9f, 0.8f, 0.1f];
        PackedWeight magnitude = SparseFormat.Pack(dense, 4, 1);
        PackedWeight wanda = SparseFormat.Pack(dense, 4, 1, [1, 1, 1, 100]);
        Assert.Equal(0b0011, SparseFormat.Nibble(magnitude, 0, 0));
        Assert.Equal(0b1001, SparseFormat.Nibble(wanda, 0, 0));
    }

    [Fact]
    public void CompressedBytesAreAbout53PercentOfDense()
    {
        PackedWeight packed = SparseFormat.Pack(new float[1152 * 6912], 1152, 6912);
        Assert.Equal(0.53125, (double)packed.ByteCount / (1152L * 6912 * sizeof(float)));
    }

    [Fact]
    public void WrongSizesAreRefused()
    {
        Assert.Throws<ArgumentException>(() => SparseFormat.Pack(new float[11], 4, 3));
        Assert.Throws<ArgumentException>(() => SparseFormat.Pack(new float[12], 4, 3, [1, 1]));
    }
}
