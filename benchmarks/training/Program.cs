using System.Globalization;
using ScottPlot;

// plot-loss TRAINING_LOG.csv OUT.png [TITLE] [Y_LABEL] [VALIDATION_LABEL]
// Training loss per step and validation loss where it was measured, from `serving train`'s or
// `serving train-clip`'s log (columns: step,loss,learning_rate,gradient_norm,throughput,validation_loss,…).
if (args.Length < 2)
{
    Console.Error.WriteLine("usage: plot-loss TRAINING_LOG.csv OUT.png [TITLE] [Y_LABEL] [VALIDATION_LABEL]");
    return 2;
}

var trainSteps = new List<double>();
var trainLoss = new List<double>();
var validSteps = new List<double>();
var validLoss = new List<double>();
foreach (string line in File.ReadLines(args[0]).Skip(1))
{
    string[] cells = line.Split(',');
    double step = double.Parse(cells[0], CultureInfo.InvariantCulture);
    if (cells[1].Length > 0)
    {
        trainSteps.Add(step);
        trainLoss.Add(double.Parse(cells[1], CultureInfo.InvariantCulture));
    }

    if (cells.Length > 5 && cells[5].Length > 0)
    {
        validSteps.Add(step);
        validLoss.Add(double.Parse(cells[5], CultureInfo.InvariantCulture));
    }
}

var plot = new Plot();
var train = plot.Add.ScatterLine(trainSteps.ToArray(), trainLoss.ToArray());
train.LegendText = "training loss (batch)";
train.LineWidth = 1;
var valid = plot.Add.Scatter(validSteps.ToArray(), validLoss.ToArray());
valid.LegendText = args.Length > 4 ? args[4] : "validation loss (held-out books)";
valid.MarkerSize = 7;
valid.LineWidth = 2;
plot.Title(args.Length > 2 ? args[2] : "Training");
plot.XLabel("step");
plot.YLabel(args.Length > 3 ? args[3] : "cross-entropy, nats per token");
plot.ShowLegend();
plot.SavePng(args[1], 900, 500);
Console.WriteLine($"{args[1]}: {trainSteps.Count} training points, {validSteps.Count} validation points");
return 0;
