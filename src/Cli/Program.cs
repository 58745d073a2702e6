using System.CommandLine;
using Serving.Cli;

RootCommand root = new("serving: a lean inference server for ONNX models: tools for model folders and generation")
{
    ModelsCommand.Create(),
    GenerateCommand.Create(),
    EvalDebiasCommand.Create(),
    SparsifyCommand.Create(),
    QuantizeCommand.Create(),
    TrainCommand.Create(),
    TrainClipCommand.Create(),
    ShapesWorldCommand.Create(),
    EvalPplCommand.Create(),
    CorpusCommand.Create(),
    CalibrateKvCommand.Create(),
    EvalKvCommand.Create(),
    ExportGgufCommand.Create(),
};
return CommandLine.Run(root, args);
