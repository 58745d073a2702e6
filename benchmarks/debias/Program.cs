using System.Text.Json;
using ScottPlot;

// plot-debias EVAL.json OUT.png [TITLE]
// Grouped bars per method from `serving eval-debias --model DIR --json`: the debiased concept's
// skew (background MaxSkew@100 for shape queries), zero-shot shape accuracy, and the
// unconsidered concept's skew (size MaxSkew@100 for colour queries).
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: plot-debias EVAL.json OUT.png [TITLE]");
    return 2;
}

using JsonDocument doc = JsonDocument.Parse(File.ReadAllText(args[0]));
var rows = doc.RootElement.EnumerateArray().ToArray();
(string Key, string Label, Color Colour)[] series =
[
    ("background_max_skew", "background MaxSkew@100 (shape queries)", Colors.SteelBlue),
    ("shape_accuracy", "zero-shot shape accuracy", Colors.SeaGreen),
    ("size_max_skew", "size MaxSkew@100 (colour queries, unconsidered)", Colors.DarkOrange),
];

var plot = new Plot();
var bars = new List<Bar>();
var positions = new List<double>();
var labels = new List<string>();
for (int r = 0; r < rows.Length; r++)
{
    double centre = r * (series.Length + 1);
    for (int s = 0; s < series.Length; s++)
    {
        bars.Add(new Bar { Position = centre + s, Value = rows[r].GetProperty(series[s].Key).GetDouble(), FillColor = series[s].Colour });
    }

    string method = rows[r].GetProperty("method").GetString()!, from = rows[r].GetProperty("concept_from").GetString()!;
    positions.Add(centre + 1);
    labels.Add(from == "-" ? method : $"{method}\n({from})");
}

plot.Add.Bars(bars);
foreach (var (_, label, colour) in series)
{
    plot.Legend.ManualItems.Add(new LegendItem { LabelText = label, FillColor = colour });
}

plot.Axes.Bottom.SetTicks([.. positions], [.. labels]);
plot.Axes.Margins(bottom: 0);
plot.Axes.SetLimitsY(0, Math.Max(1.0, bars.Max(b => b.Value)) * 1.25); // headroom for the legend above the bars
plot.Title(args.Length > 2 ? args[2] : "Debiasing the background concept");
plot.ShowLegend(Alignment.UpperRight);
plot.SavePng(args[1], 1000, 520);
Console.WriteLine($"{args[1]}: {rows.Length} methods");
return 0;
