using Serving.Server.Apis;
using Serving.Server.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.Configuration.AddCommandLine(args, ServingOptions.CommandLineSwitches);
builder.AddServing();
builder.AddServingTelemetry();
builder.AddRetrieval();

var app = builder.Build();
app.UseServing();
app.UseServingTelemetry();
app.MapHealthApi();
app.MapModelsApi();
app.MapChatApi();
app.MapCompletionsApi();
app.MapTokenizeApi();
app.MapEmbeddingsApi();
app.MapRetrievalApi();
app.MapDashboardApi();
app.Run();

/// <summary>Visible to the test host (WebApplicationFactory).</summary>
public partial class Program;
