using Serving.Server.Apis;

var builder = WebApplication.CreateBuilder(args);

var app = builder.Build();
app.MapHealthApi();
app.Run();
