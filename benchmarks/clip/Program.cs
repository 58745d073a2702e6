// clip-bench images MODEL_DIR IMAGE_DIR BATCH [THREADS=0: ONNX Runtime's default] → {"images":N,"seconds":s,"images_per_second":x}
//   decode + preprocess + vision tower for every file of IMAGE_DIR, in batches, after one warm-up batch.
// clip-bench search COUNT DIM QUERIES TOP_K     → {"count":N,"p50_ms":x,"p99_ms":x}
//   exact search over COUNT random unit vectors with the server's VectorIndex.
using System.Diagnostics;
using System.Numerics.Tensors;
using System.Text.Json;
using Serving.Runtime.Models.Clip;
using Serving.Runtime.Retrieval;
using Serving.Runtime.Vision;

return args[0] switch
{
    "images" => Images(args[1], args[2], int.Parse(args[3]), args.Length > 4 ? int.Parse(args[4]) : 0),
    "search" => Search(int.Parse(args[1]), int.Parse(args[2]), int.Parse(args[3]), int.Parse(args[4])),
    _ => throw new ArgumentException("usage: clip-bench images MODEL IMAGES BATCH | search COUNT DIM QUERIES TOP_K"),
};

static int Images(string modelDir, string imageDir, int batch, int threads)
{
    using var options = new Microsoft.ML.OnnxRuntime.SessionOptions { IntraOpNumThreads = threads };
    using ClipModel model = ClipModel.Load(modelDir, options);
    string[] files = [.. Directory.GetFiles(imageDir).Order()];
    float[][] Embed(IEnumerable<string> paths) =>
        model.EmbedImages([.. paths.Select(p => ImageDecoder.Decode(File.ReadAllBytes(p), 100_000_000))]);
    Embed(files.Take(batch));
    var clock = Stopwatch.StartNew();
    for (int start = 0; start < files.Length; start += batch)
    {
        Embed(files.Skip(start).Take(batch));
    }

    double seconds = clock.Elapsed.TotalSeconds;

    // The share of the CPU side alone: decode + resize + normalise of every file, no model.
    clock.Restart();
    var pixels = new float[model.Processor.ValuesPerImage];
    foreach (string file in files)
    {
        model.Processor.Process(ImageDecoder.Decode(File.ReadAllBytes(file), 100_000_000), pixels);
    }

    double preprocess = clock.Elapsed.TotalSeconds;
    Console.WriteLine(JsonSerializer.Serialize(new { images = files.Length, seconds, images_per_second = files.Length / seconds, decode_and_preprocess_seconds = preprocess }));
    return 0;
}

static int Search(int count, int dim, int queries, int topK)
{
    var random = new Random(1);
    float[] Unit()
    {
        var v = new float[dim];
        for (int i = 0; i < dim; i++)
        {
            v[i] = (float)(random.NextDouble() - 0.5);
        }

        TensorPrimitives.Divide(v, TensorPrimitives.Norm<float>(v), v);
        return v;
    }

    var index = new VectorIndex(dim, count);
    for (int i = 0; i < count; i++)
    {
        index.Upsert(i.ToString(System.Globalization.CultureInfo.InvariantCulture), Unit());
    }

    index.Search(Unit(), topK);
    var times = new double[queries];
    for (int q = 0; q < queries; q++)
    {
        float[] query = Unit();
        long start = Stopwatch.GetTimestamp();
        index.Search(query, topK);
        times[q] = Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }

    Array.Sort(times);
    Console.WriteLine(JsonSerializer.Serialize(new { count, dim, queries, top_k = topK, p50_ms = times[queries / 2], p99_ms = times[(int)(queries * 0.99)] }));
    return 0;
}
