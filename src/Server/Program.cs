using Serving.Server.Apis;
using Serving.Server.Hosting;

var builder = WebApplication.CreateBuilder(args);
builder.AddServing();

var app = builder.Build();
app.UseServing();
app.MapHealthApi();
app.MapModelsApi();
app.MapChatApi();
app.MapCompletionsApi();
app.MapTokenizeApi();
app.Run();

/// <summary>Visible to the test host (WebApplicationFactory).</summary>
public partial class Program;
