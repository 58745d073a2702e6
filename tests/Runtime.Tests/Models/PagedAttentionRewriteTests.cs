using System.Reflection;
using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;
using Serving.Runtime.Generation;
using Serving.Runtime.Models;
using Serving.Runtime.Onnx;
using Serving.Runtime.Onnx.Proto;
using Serving.Runtime.Sparsity;
using Serving.Runtime.Tests.Models.Gemma3;

namespace Serving.Runtime.Tests.Models;

/// <summary>
/// The rewritten graph against the standard one: packed sequences that read their KV blocks in
/// place give the tokens and logits of the concat graph, for prefill in chunks and decode.
/// </summary>
public sealed class PagedAttentionRewriteTests(TinyModelFixture tiny, GemmaShapedModelFixture gemma)
    : IClassFixture<TinyModelFixture>, IClassFixture<GemmaShapedModelFixture>
{
    private static int[] Prompt(int length, int salt) => Enumerable.Range(0, length).Select(i => 7 + (i * 31 + salt * 17) % 900).ToArray();

    private static int[] Expected(DecoderModel model, int[] prompt, int maxTokens) =>
        [.. new Generator(model).Generate(prompt, new GenerateOptions(maxTokens, StopAtEos: false)).TokenIds];

    [Fact]
    public void ChunkedPrefillThenDecodeGivesTheConcatGraphsTokens()
    {
        using var paged = new PagedHarness(tiny.Model, blockSize: 4);
        int[] prompt = Prompt(40, 1);
        int[] chunks = [15, 15, 10];
        Assert.Equal(Expected(tiny.Model, prompt, 12), paged.Greedy([prompt], chunks, 12)[0]);
    }

    [Fact]
    public void SequencesPackedIntoOneCallMatchTheirSoloRuns()
    {
        using var paged = new PagedHarness(tiny.Model, blockSize: 4);
        int[][] prompts = [Prompt(3, 2), Prompt(33, 3), Prompt(17, 4)];
        int[][] results = paged.Greedy(prompts, [64], 9);
        for (int s = 0; s < prompts.Length; s++)
        {
            Assert.Equal(Expected(tiny.Model, prompts[s], 9), results[s]);
        }
    }

    [Fact]
    public void TheGemmaLayoutWithOneKvHeadAndItsWindowMatches()
    {
        using var paged = new PagedHarness(gemma.Model, blockSize: 16);
        int[][] prompts = [Prompt(21, 5), Prompt(6, 6)];
        int[][] results = paged.Greedy(prompts, [5, 30], 10);
        for (int s = 0; s < prompts.Length; s++)
        {
            Assert.Equal(Expected(gemma.Model, prompts[s], 10), results[s]);
        }
    }

    [Fact]
    public void PrefillLogitsEqualTheConcatGraphs()
    {
        using var paged = new PagedHarness(tiny.Model, blockSize: 4);
        int[] prompt = Prompt(29, 8);
        float[] logits = paged.Prefill(prompt);
        using var runner = new ModelRunner(tiny.Model);
        float[] expected = SoloLastLogits(runner, prompt, tiny.Config.NumHiddenLayers);
        for (int i = 0; i < expected.Length; i++)
        {
            Assert.True(Math.Abs(logits[i] - expected[i]) <= 1e-4 + 1e-4 * Math.Abs(expected[i]), $"logit {i}: {logits[i]} against {expected[i]}");
        }
    }

    [Fact]
    public void AGraphWithoutThePatternIsRefusedNamingTheNode()
    {
        ModelProto model = OnnxModelFile.Load(tiny.Model.OnnxPath);
        NodeProto concat = model.Graph.Node.First(node => node.OpType == "Concat" && node.Input.Contains(DecoderNames.PastKeyOf(1)));
        concat.Attribute.First(a => a.Name == "axis").I = 1;
        var error = Assert.Throws<PagedRewriteException>(() => PagedAttentionRewrite.Rewrite(model, tiny.Config));
        Assert.Equal(concat.Name, error.Node);
        Assert.Contains("Concat(past, new, axis = 2)", error.Message);
    }

    /// <summary>
    /// Folders written before num_logits_to_keep lost its rank (models/kjv-gemma3 until 2026-12-03) declare it 0-d
    /// and read it through Neg → Unsqueeze → Slice: they still load, generate the same tokens, and rewrite.
    /// </summary>
    [Fact]
    public void AFolderWithTheScalarNumLogitsToKeepStillLoadsAndIsRewritten()
    {
        using var folder = new TempFolder();
        Serving.Runtime.Models.Gemma3.Gemma3ModelWriter.WriteRandom(folder.Path, tiny.Config, seed: 7);
        string onnxPath = Path.Combine(folder.Path, "onnx", "model.onnx");
        ModelProto model = OnnxModelFile.Load(onnxPath);
        model.Graph.Input.Single(input => input.Name == "num_logits_to_keep").Type.TensorType.Shape = new TensorShapeProto();
        string negated = model.Graph.Node.Single(node => node.OpType == "Neg" && node.Input[0] == "num_logits_to_keep").Output[0];
        NodeProto reshape = model.Graph.Node.Single(node => node.OpType == "Reshape" && node.Input[0] == negated);
        var axes = new TensorProto { Name = reshape.Name + "/axes", DataType = (int)TensorProto.Types.DataType.Int64 };
        axes.Dims.Add(1);
        axes.Int64Data.Add(0);
        model.Graph.Initializer.Add(axes);
        (reshape.OpType, reshape.Input[1]) = ("Unsqueeze", axes.Name);
        OnnxModelFile.Save(model, onnxPath, long.MaxValue);

        using DecoderModel old = DecoderModel.Load(folder.Path);
        Assert.False(old.Signature.NumLogitsToKeepIsVector);
        Assert.Equal(Expected(tiny.Model, Prompt(20, 9), 8), Expected(old, Prompt(20, 9), 8));
        ModelProto rewritten = PagedAttentionRewrite.Rewrite(model, tiny.Config);
        Assert.Contains(rewritten.Graph.Node, node => node.OpType == "Gather" && node.Input.Contains(PagedAttentionRewrite.LogitsIndices));
        Assert.DoesNotContain(rewritten.Graph.Input, input => input.Name == "num_logits_to_keep");
    }

    private static float[] SoloLastLogits(ModelRunner runner, int[] prompt, int layers)
    {
        OrtValue[] empty = [.. Enumerable.Range(0, 2 * layers).Select(_ => runner.EmptyPast(1))];
        try
        {
            long[] ids = [.. prompt.Select(t => (long)t)];
            long[] ones = [.. ids.Select(_ => 1L)];
            long[] positions = [.. Enumerable.Range(0, ids.Length).Select(p => (long)p)];
            using DecoderOutputs outputs = runner.Run(new DecoderBatch(1, ids.Length, ids, ones, positions, empty[..layers], empty[layers..]) { LastLogitsOnly = true });
            return outputs.Logits(0, 0).ToArray();
        }
        finally
        {
            foreach (OrtValue value in empty)
            {
                value.Dispose();
            }
        }
    }

    /// <summary>
    /// The rewritten model over a managed pool with a bump allocator: each sequence gets fresh
    /// blocks per layer as it grows, and a sliding layer's blocks that left the window are
    /// dropped from its table (−1), so reading one would fail the call.
    /// </summary>
    private sealed class PagedHarness : IDisposable
    {
        private readonly DecoderModel _model;
        private readonly InferenceSession _session;
        private readonly int _blockSize, _layers, _numBlocks;
        private readonly float[] _pool;
        private int _nextBlock;

        public PagedHarness(DecoderModel model, int blockSize)
        {
            _model = model;
            _blockSize = blockSize;
            _layers = model.Config.NumHiddenLayers;
            _numBlocks = 4096;
            _pool = new float[(long)_numBlocks * 2 * model.Config.NumKeyValueHeads * blockSize * model.Config.HeadDim];
            ModelProto rewritten = PagedAttentionRewrite.Rewrite(OnnxModelFile.Load(model.OnnxPath), model.Config);
            using var options = new SessionOptions { IntraOpNumThreads = 2 };
            options.AddSessionConfigEntry("session.model_external_initializers_file_folder_path", Path.GetDirectoryName(model.OnnxPath)!);
            options.RegisterCustomOpLibrary(SparseKernels.LibraryPath);
            _session = new InferenceSession(rewritten.ToByteArray(), options);
        }

        private sealed class Sequence(int[] prompt)
        {
            public List<int> Tokens { get; } = [.. prompt];
            public int Length { get; set; }
            public List<int>[] Blocks { get; init; } = [];
        }

        public float[] Prefill(int[] prompt)
        {
            var sequence = NewSequence(prompt);
            return Step([sequence], [prompt.Length])[0];
        }

        /// <summary>Prefills every prompt in chunks (sizes taken in turn), then decodes greedily, all sequences in each call.</summary>
        public int[][] Greedy(int[][] prompts, int[] chunks, int maxTokens)
        {
            Sequence[] sequences = [.. prompts.Select(NewSequence)];
            var generated = prompts.Select(_ => new List<int>()).ToArray();
            for (int call = 0; generated.Any(g => g.Count < maxTokens); call++)
            {
                int[] counts = [.. sequences.Select((s, i) => s.Length < prompts[i].Length
                    ? Math.Min(chunks[call % chunks.Length], prompts[i].Length - s.Length)
                    : generated[i].Count < maxTokens ? 1 : 0)];
                float[][] logits = Step(sequences, counts);
                for (int i = 0; i < sequences.Length; i++)
                {
                    if (counts[i] > 0 && sequences[i].Length == sequences[i].Tokens.Count)
                    {
                        int next = ArgMax(logits[i]);
                        generated[i].Add(next);
                        sequences[i].Tokens.Add(next);
                    }
                }
            }

            return [.. generated.Select(g => g.ToArray())];
        }

        private Sequence NewSequence(int[] prompt) => new(prompt) { Blocks = [.. Enumerable.Range(0, _layers).Select(_ => new List<int>())] };

        /// <summary>One call: <paramref name="counts"/>[s] new tokens of each sequence (0: sits out); the logits of each one's last token.</summary>
        private float[][] Step(Sequence[] sequences, int[] counts)
        {
            int[] active = [.. Enumerable.Range(0, sequences.Length).Where(i => counts[i] > 0)];
            var ids = new List<long>();
            var positions = new List<long>();
            var starts = new List<int> { 0 };
            foreach (int i in active)
            {
                Sequence s = sequences[i];
                for (int t = 0; t < counts[i]; t++)
                {
                    ids.Add(s.Tokens[s.Length + t]);
                    positions.Add(s.Length + t);
                }

                starts.Add(starts[^1] + counts[i]);
                Grow(s, s.Length + counts[i]);
            }

            int cols = active.Max(i => sequences[i].Blocks.Max(b => b.Count));
            var tables = Enumerable.Repeat(-1, _layers * active.Length * cols).ToArray();
            var past = new int[_layers * active.Length];
            for (int layer = 0; layer < _layers; layer++)
            {
                for (int a = 0; a < active.Length; a++)
                {
                    Sequence s = sequences[active[a]];
                    past[layer * active.Length + a] = s.Length;
                    for (int c = 0; c < s.Blocks[layer].Count; c++)
                    {
                        tables[(layer * active.Length + a) * cols + c] = s.Blocks[layer][c];
                    }
                }
            }

            long[] rows = [.. starts.Skip(1).Select(end => (long)end - 1)];
            int heads = _model.Config.NumKeyValueHeads, d = _model.Config.HeadDim;
            using OrtValue idsValue = OrtValue.CreateTensorValueFromMemory(ids.ToArray(), [1, ids.Count]);
            using OrtValue positionValue = OrtValue.CreateTensorValueFromMemory(positions.ToArray(), [1, ids.Count]);
            using OrtValue poolValue = OrtValue.CreateTensorValueFromMemory(_pool, [_numBlocks, 2, heads, _blockSize, d]);
            using OrtValue tableValue = OrtValue.CreateTensorValueFromMemory(tables, [_layers, active.Length, cols]);
            using OrtValue pastValue = OrtValue.CreateTensorValueFromMemory(past, [_layers, active.Length]);
            using OrtValue startValue = OrtValue.CreateTensorValueFromMemory(starts.ToArray(), [starts.Count]);
            using OrtValue rowValue = OrtValue.CreateTensorValueFromMemory(rows, [rows.Length]);
            using var outputs = _session.Run(new RunOptions(),
                ["input_ids", "position_ids", PagedAttentionRewrite.KvPool, PagedAttentionRewrite.BlockTables, PagedAttentionRewrite.PastLengths,
                 PagedAttentionRewrite.QueryStarts, PagedAttentionRewrite.LogitsIndices],
                [idsValue, positionValue, poolValue, tableValue, pastValue, startValue, rowValue], ["logits"]);
            ReadOnlySpan<float> logits = outputs[0].GetTensorDataAsSpan<float>();
            int vocab = _model.Config.VocabSize;
            var result = new float[sequences.Length][];
            for (int a = 0; a < active.Length; a++)
            {
                result[active[a]] = logits.Slice(a * vocab, vocab).ToArray();
                sequences[active[a]].Length += counts[active[a]];
            }

            return result;
        }

        /// <summary>Blocks for <paramref name="length"/> slots in every layer; a sliding layer forgets those before its window.</summary>
        private void Grow(Sequence s, int length)
        {
            for (int layer = 0; layer < _layers; layer++)
            {
                List<int> blocks = s.Blocks[layer];
                while (blocks.Count * _blockSize < length)
                {
                    blocks.Add(_nextBlock++);
                }

                if (_model.Config.LayerKind(layer) == Runtime.Models.Gemma3.AttentionKind.Sliding)
                {
                    int firstKept = Math.Max(0, s.Length - (_model.Config.SlidingWindow - 1));
                    for (int c = 0; (c + 1) * _blockSize <= firstKept; c++)
                    {
                        blocks[c] = -1;
                    }
                }
            }
        }

        private static int ArgMax(float[] values)
        {
            int best = 0;
            for (int i = 1; i < values.Length; i++)
            {
                best = values[i] > values[best] ? i : best;
            }

            return best;
        }

        public void Dispose() => _session.Dispose();
    }
}
