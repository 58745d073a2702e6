using Serving.Server.Apis;

var builder = WebApplication.CreateBuilder(args);

var app = builder.Build();
app.MapHealthApi();
app.Run();

/// <summary>Visible to the test host (WebApplicationFactory).</summary>
public partial class Program;
