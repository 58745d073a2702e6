using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Sparsity;

namespace Serving.Runtime.Tests.Sparsity;

/// <summary>The native op against ONNX Runtime's dense MatMul on the same pruned weights.</summary>
public sealed class SparseMatMulOpTests
{
    [Theory]
    [InlineData(1, 37, 70)]
    [InlineData(3, 37, 70)]
    [InlineData(8, 100, 13)]
    [InlineData(64, 37, 70)]
    [InlineData(257, 100, 13)]
    [InlineData(1, 640, 48)]
    [InlineData(257, 640, 48)]
    public void MatchesDenseMatMulOnThePrunedWeights(int m, int k, int n)
    {
        PackedWeight packed = SparseFormat.Pack(Random(k * n, seed: k + n), k, n);
        float[] a = Random(m * k, seed: m);

        float[] sparse = SingleOpModel.Run(SingleOpModel.Sparse(packed), a, [m, k]);
        float[] dense = SingleOpModel.Run(SingleOpModel.Dense(SparseFormat.Unpack(packed), k, n), a, [m, k]);

        Assert.True(RelativeError(sparse, dense) <= 1e-5, $"relative error {RelativeError(sparse, dense)}");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(9)]
    [InlineData(64)]
    public void Fp16MatchesTheFp32ProductOfTheRoundedInputs(int m)
    {
        const int K = 37, N = 70;
        PackedWeight packed = SparseFormat.Pack(Random(K * N, seed: 11), K, N);
        float[] a = [.. Random(m * K, seed: m).Select(x => (float)(Half)x)];
        PackedWeight rounded = packed with { Values = [.. packed.Values.Select(v => (float)(Half)v)] };

        float[] half = SingleOpModel.Run(SingleOpModel.Sparse16(packed), a, [m, K]);
        float[] reference = SingleOpModel.Run(SingleOpModel.Dense(SparseFormat.Unpack(rounded), K, N), a, [m, K]);

        // fp16 output: 11 significant bits, a relative rounding error of at most 2^-11 ≈ 4.9e-4.
        Assert.True(RelativeError(half, reference) <= 5e-4, $"relative error {RelativeError(half, reference)}");
    }

    [Fact]
    public void AddsTheBiasAndKeepsLeadingDimensions()
    {
        const int K = 21, N = 9;
        PackedWeight packed = SparseFormat.Pack(Random(K * N, seed: 3), K, N);
        float[] bias = Random(N, seed: 4), a = Random(2 * 5 * K, seed: 5);
        float[] withBias = SingleOpModel.Run(SingleOpModel.Sparse(packed, bias), a, [2, 5, K]);
        float[] without = SingleOpModel.Run(SingleOpModel.Sparse(packed), a, [2, 5, K]);

        Assert.Equal(2 * 5 * N, withBias.Length);
        for (int i = 0; i < withBias.Length; i++)
        {
            Assert.Equal(without[i] + bias[i % N], withBias[i], 1e-5f);
        }
    }

    [Fact]
    public void InvalidMaskFailsAtLoadNamingRowAndGroup()
    {
        PackedWeight packed = SparseFormat.Pack(Random(8 * 3, seed: 6), 8, 3);
        packed.Masks[1 * packed.MaskStride] = 0x37;  // row 1, group 0 keeps 3 weights

        var error = Assert.Throws<OnnxRuntimeException>(() => SingleOpModel.Run(SingleOpModel.Sparse(packed), new float[8], [1, 8]));
        Assert.Contains("masks are not 2:4: row 1, group 0: keep-mask 0x7 does not keep exactly 2 of 4 weights", error.Message);
    }

    [Fact]
    public void ValuesOfTheWrongSizeFailAtLoad()
    {
        PackedWeight packed = SparseFormat.Pack(Random(8 * 3, seed: 7), 8, 3);
        var truncated = packed with { Values = packed.Values[..^3] };
        var model = SingleOpModel.Sparse(truncated);
        model.Graph.Initializer[0].Dims[1] = truncated.ValueStride - 1;

        var error = Assert.Throws<OnnxRuntimeException>(() => SingleOpModel.Run(model, new float[8], [1, 8]));
        Assert.Contains("values has shape [3, 3], expected [3, 4] for K = 8", error.Message);
    }

    [Fact]
    public void WeightsFedAsInputsAreRefused()
    {
        PackedWeight packed = SparseFormat.Pack(Random(8 * 3, seed: 8), 8, 3);
        var model = SingleOpModel.Sparse(packed);
        var masks = model.Graph.Initializer[1];
        model.Graph.Initializer.RemoveAt(1);
        model.Graph.Input.Add(Runtime.Onnx.GraphBuilder.ValueInfo(masks.Name, Runtime.Onnx.Proto.TensorProto.Types.DataType.Uint8, 3, 1));

        var error = Assert.Throws<OnnxRuntimeException>(() => SingleOpModel.Run(model, new float[8], [1, 8]));
        Assert.Contains("masks must be a constant initializer", error.Message);
    }

    internal static float[] Random(int count, int seed)
    {
        var random = new Random(seed);
        var values = new float[count];
        for (int i = 0; i < count; i++)
        {
            values[i] = (float)(random.NextDouble() * 2 - 1);
        }

        return values;
    }

    internal static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        Assert.Equal(expected.Length, actual.Length);
        double diff = 0, norm = 0;
        for (int i = 0; i < expected.Length; i++)
        {
            diff += Math.Pow(actual[i] - expected[i], 2);
            norm += Math.Pow(expected[i], 2);
        }

        return Math.Sqrt(diff / norm);
    }
}
